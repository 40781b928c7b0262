//! Splits a newline-delimited JSON stream into lines as its chunks arrive: a chunk may end in
//! the middle of a line (or of a UTF-8 character), so the tail waits for the next chunk.

/// Collects chunks and hands out each line once its newline has arrived.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `chunk` and returns the lines it completed, without their `\n` or `\r\n`; blank
    /// lines are skipped.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let Some(last_newline) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.pending.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.pending, rest);
        complete
            .split(|b| *b == b'\n')
            .filter_map(non_blank)
            .collect()
    }

    /// The last line, if the stream ended without a newline after it.
    pub(crate) fn finish(self) -> Option<Vec<u8>> {
        non_blank(&self.pending)
    }
}

fn non_blank(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.iter().all(u8::is_ascii_whitespace)).then(|| line.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` in order and returns every line, including an unterminated last one.
    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::default();
        let mut lines: Vec<Vec<u8>> = chunks.iter().flat_map(|c| splitter.push(c)).collect();
        lines.extend(splitter.finish());
        lines
            .into_iter()
            .map(|l| String::from_utf8(l).expect("test lines are UTF-8"))
            .collect()
    }

    /// Chunks as they arrive, the lines expected from them, why the row is there.
    type Row = (
        &'static [&'static [u8]],
        &'static [&'static str],
        &'static str,
    );

    #[test]
    fn lines_are_reassembled_across_chunk_boundaries() {
        let rows: [Row; 8] = [
            (&[b"{\"a\":1}\n"], &["{\"a\":1}"], "one line, one chunk"),
            (
                &[b"{\"a\":", b"1}\n"],
                &["{\"a\":1}"],
                "split inside a line",
            ),
            (
                &[b"{\"a\":1}", b"\n"],
                &["{\"a\":1}"],
                "newline in its own chunk",
            ),
            (
                &[b"1\n2\n3\n"],
                &["1", "2", "3"],
                "several lines in one chunk",
            ),
            (
                &[b"1\n2", b"\n3", b"\n"],
                &["1", "2", "3"],
                "lines straddling chunks",
            ),
            (&[b"1\r\n\n  \n2\n"], &["1", "2"], "CRLF and blank lines"),
            (&[b"1\n2"], &["1", "2"], "last line without newline"),
            (
                &[b"\"\xc3", b"\xa9\"\n"],
                &["\"\u{e9}\""],
                "split inside a UTF-8 character",
            ),
        ];
        for (chunks, expected, why) in rows {
            assert_eq!(split(chunks), expected, "{why}");
        }
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"{\"type\":\"sta").is_empty());
        assert!(splitter.push(b"rted\"").is_empty());
        assert_eq!(
            splitter.push(b"}\n{"),
            vec![b"{\"type\":\"started\"}".to_vec()]
        );
        assert_eq!(splitter.finish(), Some(b"{".to_vec()));
    }
}
