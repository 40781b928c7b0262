//! Left-aligned text tables in the kubectl style: upper-case headers, columns three spaces
//! apart, no trailing blanks. A watch prints later rows with the widths of its first table.

/// Renders `headers` and `rows`, each line prefixed with `indent` and ended with a newline.
pub(crate) fn render(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths = widths(headers, rows);
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| format!("{indent}{}\n", line(&widths, row)))
        .collect::<Vec<_>>()
        .concat()
}

/// The width of each column: its widest cell, header included.
pub(crate) fn widths(headers: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

/// One row padded to `widths`, without a newline; a cell wider than its column pushes the
/// rest of the row right rather than being cut.
pub(crate) fn line(widths: &[usize], cells: &[String]) -> String {
    let mut out = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            out.push_str("   ");
        }
        out.push_str(cell);
        if i + 1 < cells.len() {
            out.push_str(&" ".repeat(width.saturating_sub(cell.chars().count())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["web".to_owned(), "é.example".to_owned(), "61d".to_owned()],
            vec![
                "mail-server".to_owned(),
                "m.example".to_owned(),
                "-".to_owned(),
            ],
        ];
        assert_eq!(
            render("  ", &["ID", "DOMAINS", "EXPIRES"], &rows),
            "  ID            DOMAINS     EXPIRES\n  \
               web           é.example   61d\n  \
               mail-server   m.example   -\n"
        );
    }

    #[test]
    fn a_later_row_keeps_the_first_widths_and_overflows_rather_than_cuts() {
        let widths = widths(
            &["ID", "READY"],
            &[vec!["web".to_owned(), "True".to_owned()]],
        );
        assert_eq!(
            line(&widths, &["api".to_owned(), "False".to_owned()]),
            "api   False"
        );
        assert_eq!(
            line(&widths, &["mail".to_owned(), "-".to_owned()]),
            "mail   -"
        );
    }
}
