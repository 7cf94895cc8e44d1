//! WeChat's rules for uploaded files (material and media APIs): the type, the file name's
//! extension, the content's magic bytes and the size. The operator API checks uploads with them
//! before any byte goes upstream; the simulator answers with them as WeChat does.

/// What an upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// `image`: bmp, png, jpg (jpeg), gif; 10 MB.
    Image,
    /// `voice`: amr, mp3 (permanent also wma, wav); 2 MB.
    Voice,
    /// `video`: mp4; 10 MB.
    Video,
    /// `thumb`: jpg; 64 KB.
    Thumb,
    /// An image inside an article (`media/uploadimg`): jpg, png; 1 MB.
    ArticleImage,
}

/// Why a file is refused, with the errcode WeChat answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Not one of image, voice, video, thumb (40004).
    #[error("unknown media type {0:?}: use image, voice, video or thumb (WeChat errcode 40004)")]
    UnknownType(String),
    /// The extension or the content does not fit the type (40005).
    #[error("{0} (WeChat errcode 40005)")]
    FileType(String),
    /// Larger than the type allows (40009–40012).
    #[error("{size} bytes is over the {limit}-byte limit of {kind} (WeChat errcode {errcode})")]
    TooLarge {
        /// The type's name.
        kind: &'static str,
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
        /// What WeChat answers.
        errcode: i64,
    },
    /// An empty file (41005).
    #[error("the file is empty (WeChat errcode 41005)")]
    Empty,
}

impl MediaError {
    /// The errcode WeChat answers for this refusal.
    pub fn errcode(&self) -> i64 {
        match self {
            MediaError::UnknownType(_) => 40004,
            MediaError::FileType(_) => 40005,
            MediaError::TooLarge { errcode, .. } => *errcode,
            MediaError::Empty => 41005,
        }
    }
}

const MB: u64 = 1024 * 1024;

impl MediaKind {
    /// The kind named by WeChat's `type` parameter.
    pub fn parse(name: &str) -> Result<MediaKind, MediaError> {
        match name {
            "image" => Ok(MediaKind::Image),
            "voice" => Ok(MediaKind::Voice),
            "video" => Ok(MediaKind::Video),
            "thumb" => Ok(MediaKind::Thumb),
            other => Err(MediaError::UnknownType(other.to_owned())),
        }
    }

    /// WeChat's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Voice => "voice",
            MediaKind::Video => "video",
            MediaKind::Thumb => "thumb",
            MediaKind::ArticleImage => "article image",
        }
    }

    /// The largest file WeChat takes of this type.
    pub fn limit(self) -> u64 {
        match self {
            MediaKind::Image | MediaKind::Video => 10 * MB,
            MediaKind::Voice => 2 * MB,
            MediaKind::Thumb => 64 * 1024,
            MediaKind::ArticleImage => MB,
        }
    }

    fn errcode_too_large(self) -> i64 {
        match self {
            MediaKind::Image | MediaKind::ArticleImage => 40009,
            MediaKind::Voice => 40010,
            MediaKind::Video => 40011,
            MediaKind::Thumb => 40012,
        }
    }

    /// The formats (named like their extensions) this type takes.
    pub fn formats(self, permanent: bool) -> &'static [&'static str] {
        match self {
            MediaKind::Image => &["bmp", "png", "jpg", "gif"],
            MediaKind::Voice if permanent => &["amr", "mp3", "wma", "wav"],
            MediaKind::Voice => &["amr", "mp3"],
            MediaKind::Video => &["mp4"],
            MediaKind::Thumb => &["jpg"],
            MediaKind::ArticleImage => &["jpg", "png"],
        }
    }

    /// Refuses a size over the limit (a declared one, before the body is read).
    pub fn check_size(self, size: u64) -> Result<(), MediaError> {
        if size > self.limit() {
            return Err(MediaError::TooLarge {
                kind: self.name(),
                size,
                limit: self.limit(),
                errcode: self.errcode_too_large(),
            });
        }
        Ok(())
    }

    /// Checks a whole file: not empty, the extension (`jpeg` is `jpg`) and the magic bytes
    /// both one of the type's formats, then the size. Answers the format.
    pub fn check(
        self,
        filename: &str,
        content: &[u8],
        permanent: bool,
    ) -> Result<&'static str, MediaError> {
        if content.is_empty() {
            return Err(MediaError::Empty);
        }
        let extension = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let extension = if extension == "jpeg" {
            "jpg"
        } else {
            extension.as_str()
        };
        let allowed = self.formats(permanent);
        if !allowed.contains(&extension) {
            return Err(MediaError::FileType(format!(
                "{filename:?}: a {} must be one of {}",
                self.name(),
                allowed.join(", ")
            )));
        }
        let format = sniff(content).ok_or_else(|| {
            MediaError::FileType(format!("{filename:?}: the content is not a known format"))
        })?;
        if format != extension {
            return Err(MediaError::FileType(format!(
                "{filename:?}: the content is {format}, not {extension}"
            )));
        }
        self.check_size(content.len() as u64)?;
        Ok(format)
    }
}

/// The format of a file by its magic bytes, named like its extension.
pub fn sniff(content: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| content.starts_with(magic);
    Some(if starts(b"\xFF\xD8\xFF") {
        "jpg"
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        "gif"
    } else if starts(b"BM") {
        "bmp"
    } else if starts(b"#!AMR") {
        "amr"
    } else if starts(b"ID3")
        || (content.len() > 1 && content[0] == 0xFF && content[1] & 0xE0 == 0xE0)
    {
        "mp3"
    } else if starts(b"RIFF") && content.get(8..12) == Some(b"WAVE") {
        "wav"
    } else if starts(b"\x30\x26\xB2\x75\x8E\x66\xCF\x11") {
        "wma"
    } else if content.get(4..8) == Some(b"ftyp") {
        "mp4"
    } else {
        return None;
    })
}

/// The Content-Type of a format.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "amr" => "audio/amr",
        "mp3" => "audio/mpeg",
        "wma" => "audio/x-ms-wma",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n0000";

    #[test]
    fn checks_type_extension_content_and_size() {
        let image = MediaKind::parse("image").unwrap();
        assert_eq!(image.check("a.PNG", PNG, false), Ok("png"));
        assert_eq!(
            MediaKind::Thumb.check("t.jpeg", b"\xFF\xD8\xFF\xE0", false),
            Ok("jpg")
        );
        assert!(matches!(
            image.check("a.jpg", PNG, false),
            Err(MediaError::FileType(m)) if m.contains("png, not jpg")
        ));
        assert!(matches!(
            image.check("a.exe", PNG, false),
            Err(MediaError::FileType(_))
        ));
        let wav = b"RIFF0000WAVE";
        assert_eq!(
            MediaKind::Voice
                .check("v.wav", wav, false)
                .map_err(|e| e.errcode()),
            Err(40005)
        );
        assert_eq!(MediaKind::Voice.check("v.wav", wav, true), Ok("wav"));
        assert_eq!(
            MediaKind::Video.check("v.mp4", b"\0\0\0\x18ftypmp42", false),
            Ok("mp4")
        );
        assert_eq!(image.check("a.png", b"", false), Err(MediaError::Empty));
        let mut big = b"\xFF\xD8\xFF".to_vec();
        big.resize(64 * 1024 + 1, 0);
        assert_eq!(
            MediaKind::Thumb
                .check("t.jpg", &big, false)
                .map_err(|e| e.errcode()),
            Err(40012)
        );
        assert_eq!(MediaKind::parse("doc").map_err(|e| e.errcode()), Err(40004));
        assert_eq!(content_type("mp3"), "audio/mpeg");
    }
}
