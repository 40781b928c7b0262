//! Reads the leaf out of the zip archive DSM's certificate `export` answers with. The archive
//! also holds the private key and the chain; only `cert.pem` is read.

use std::io::Read as _;

use rota_api::BackendError;

use super::KIND;

/// The member holding the leaf (beside `privkey.pem` and `chain.pem`).
const LEAF_MEMBER: &str = "cert.pem";

/// The leaf in an `export` archive: its `cert.pem` member.
pub(super) fn leaf_from_archive(archive: &[u8]) -> Result<String, BackendError> {
    let unreadable = |detail: String| BackendError::Unreachable {
        backend: KIND,
        detail: format!("SYNO.Core.Certificate export: {detail}"),
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| unreadable(format!("the answer is not a zip archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(Result::ok)
        .map(std::borrow::Cow::into_owned)
        .collect();
    let mut member = zip.by_name(LEAF_MEMBER).map_err(|_| {
        unreadable(format!(
            "the archive has no `{LEAF_MEMBER}` (it holds {names:?})"
        ))
    })?;
    let mut pem = String::new();
    member
        .read_to_string(&mut pem)
        .map_err(|e| unreadable(format!("cannot read `{LEAF_MEMBER}`: {e}")))?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn archive(members: &[(&str, &str)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for (name, text) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn the_leaf_is_cert_pem_whatever_else_the_archive_holds() {
        let zip = archive(&[
            ("privkey.pem", "KEY"),
            ("cert.pem", "LEAF"),
            ("chain.pem", "CA"),
        ]);
        assert_eq!(leaf_from_archive(&zip).unwrap(), "LEAF");
    }

    #[test]
    fn an_archive_without_cert_pem_names_what_it_holds() {
        let err = leaf_from_archive(&archive(&[("server.crt", "x")])).unwrap_err();
        assert!(err.to_string().contains("server.crt"), "{err}");
        let err = leaf_from_archive(b"<html>").unwrap_err();
        assert!(err.to_string().contains("not a zip archive"), "{err}");
    }
}
