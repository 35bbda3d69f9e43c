//! A one-pass JSON object scanner specialised for Binance frames.
//!
//! Binance frames are flat objects with short keys. Instead of building a tree, one pass over
//! an object records, for each key we know, where its value lies ([`Slots`]): a byte range and
//! a type tag. Unknown keys are skipped. Values are converted only when a decoder asks for
//! them, straight from the frame's bytes, so nothing is copied or allocated. Key order does not
//! matter and duplicate keys keep the last value, as most JSON parsers do.
//!
//! The scanner validates structure (balanced brackets, closed strings, literal spelling)
//! enough that every byte range it hands out is well-formed; it does not unescape strings:
//! a string holding a backslash is tagged [`Tag::StrEscaped`] and refused where a decoder
//! needs its content (Binance never escapes the fields we read).

/// Value type of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum Tag {
    #[default]
    Absent,
    Str,
    StrEscaped,
    Num,
    True,
    False,
    Null,
    Obj,
    Arr,
}

/// A value's location: for strings the content between the quotes, otherwise the raw text
/// (objects and arrays including their brackets).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
    pub tag: Tag,
}

/// Scanner failure: what was wrong and at which byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: usize,
    pub what: &'static str,
}

type R<T> = Result<T, SyntaxError>;

/// Number of key slots.
pub(crate) const NSLOTS: usize = 64;

/// Slot of a key, or `None` for keys no decoder reads.
#[inline(always)]
pub(crate) fn slot_of(key: &[u8]) -> Option<usize> {
    match key {
        [c @ b'A'..=b'Z'] => Some((c - b'A') as usize),
        [c @ b'a'..=b'z'] => Some(26 + (c - b'a') as usize),
        b"pu" => Some(S_PU),
        b"ap" => Some(S_AP),
        b"lastUpdateId" => Some(S_LAST_UPDATE_ID),
        b"bids" => Some(S_BIDS),
        b"asks" => Some(S_ASKS),
        b"stream" => Some(S_STREAM),
        b"data" => Some(S_DATA),
        b"result" => Some(S_RESULT),
        b"id" => Some(S_ID),
        b"code" => Some(S_CODE),
        b"msg" => Some(S_MSG),
        b"error" => Some(S_ERROR),
        _ => None,
    }
}

/// Marks a key no decoder reads.
const NO_SLOT: u8 = u8::MAX;

/// Slot of each one-byte key.
static LETTER_SLOT: [u8; 256] = {
    let mut t = [NO_SLOT; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_uppercase() {
            t[c] = b - b'A';
        } else if b.is_ascii_lowercase() {
            t[c] = 26 + b - b'a';
        }
        c += 1;
    }
    t
};

/// Slot of a one-letter key.
pub(crate) const fn letter(c: u8) -> usize {
    if c.is_ascii_uppercase() {
        (c - b'A') as usize
    } else {
        26 + (c - b'a') as usize
    }
}

pub(crate) const S_PU: usize = 52;
pub(crate) const S_AP: usize = 53;
pub(crate) const S_LAST_UPDATE_ID: usize = 54;
pub(crate) const S_BIDS: usize = 55;
pub(crate) const S_ASKS: usize = 56;
pub(crate) const S_STREAM: usize = 57;
pub(crate) const S_DATA: usize = 58;
pub(crate) const S_RESULT: usize = 59;
pub(crate) const S_ID: usize = 60;
pub(crate) const S_CODE: usize = 61;
pub(crate) const S_MSG: usize = 62;
pub(crate) const S_ERROR: usize = 63;

/// The values of one object's known keys.
#[derive(Debug)]
pub(crate) struct Slots {
    present: u64,
    spans: [Span; NSLOTS],
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            present: 0,
            spans: [Span::default(); NSLOTS],
        }
    }
}

impl Slots {
    #[inline(always)]
    pub fn get(&self, slot: usize) -> Option<Span> {
        if self.present & (1u64 << slot) != 0 {
            Some(self.spans[slot])
        } else {
            None
        }
    }
    #[inline(always)]
    pub fn has(&self, slot: usize) -> bool {
        self.present & (1u64 << slot) != 0
    }
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

/// Cursor over a frame.
#[derive(Debug)]
pub(crate) struct Scanner<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    #[inline(always)]
    fn err<T>(&self, what: &'static str) -> R<T> {
        Err(SyntaxError { pos: self.i, what })
    }

    #[inline(always)]
    pub fn skip_ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }

    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    pub fn expect(&mut self, c: u8, what: &'static str) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    /// At the opening quote: returns the content range and whether it holds an escape.
    ///
    /// A plain byte loop: Binance strings are a few bytes long, where a SIMD search's set-up
    /// costs more than it saves (measured: memchr2 was 20% of a trade frame's decode time).
    #[inline(always)]
    fn string(&mut self) -> R<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        while j < b.len() {
            match b[j] {
                b'"' => {
                    self.i = j + 1;
                    return Ok((start, j, escaped));
                }
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        self.i = b.len();
        self.err("unterminated string")
    }

    #[inline(always)]
    fn literal(&mut self, lit: &'static [u8], tag: Tag) -> R<Span> {
        if self.b[self.i..].starts_with(lit) {
            let s = Span {
                start: self.i as u32,
                end: (self.i + lit.len()) as u32,
                tag,
            };
            self.i += lit.len();
            Ok(s)
        } else {
            self.err("invalid literal")
        }
    }

    /// Skips one value and returns its span.
    #[inline(always)]
    pub fn value(&mut self) -> R<Span> {
        match self.peek() {
            Some(b'"') => {
                let (s, e, esc) = self.string()?;
                Ok(Span {
                    start: s as u32,
                    end: e as u32,
                    tag: if esc { Tag::StrEscaped } else { Tag::Str },
                })
            }
            Some(b'-' | b'0'..=b'9') => {
                let s = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                    )
                {
                    self.i += 1;
                }
                Ok(Span {
                    start: s as u32,
                    end: self.i as u32,
                    tag: Tag::Num,
                })
            }
            Some(b't') => self.literal(b"true", Tag::True),
            Some(b'f') => self.literal(b"false", Tag::False),
            Some(b'n') => self.literal(b"null", Tag::Null),
            Some(open @ (b'{' | b'[')) => {
                let s = self.i;
                self.container()?;
                Ok(Span {
                    start: s as u32,
                    end: self.i as u32,
                    tag: if open == b'{' { Tag::Obj } else { Tag::Arr },
                })
            }
            Some(_) => self.err("unexpected character"),
            None => self.err("unexpected end of frame"),
        }
    }

    /// Skips a balanced object or array starting at `self.i`.
    fn container(&mut self) -> R<()> {
        // A small stack of open brackets checks that `{` closes with `}` and `[` with `]`.
        let mut stack = [0u8; 64];
        let mut depth = 0usize;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            match c {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => {
                    if depth == stack.len() {
                        return self.err("nesting too deep");
                    }
                    stack[depth] = if c == b'{' { b'}' } else { b']' };
                    depth += 1;
                }
                b'}' | b']' => {
                    if depth == 0 || stack[depth - 1] != c {
                        return self.err("mismatched bracket");
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        self.err("unterminated object or array")
    }

    /// Scans an object at the cursor, filling `slots` with its known keys.
    #[inline]
    pub fn object(&mut self, slots: &mut Slots) -> R<()> {
        slots.present = 0;
        self.expect(b'{', "expected '{'")?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            // Fast path for the one-letter keys that make up most of a frame: `"x":`.
            let b = self.b;
            let i = self.i;
            let slot = if i + 3 < b.len() && b[i] == b'"' && b[i + 2] == b'"' && b[i + 3] == b':' {
                self.i = i + 4;
                LETTER_SLOT[b[i + 1] as usize]
            } else {
                if self.peek() != Some(b'"') {
                    return self.err("expected a key");
                }
                let (ks, ke, _) = self.string()?;
                self.expect(b':', "expected ':'")?;
                slot_of(&self.b[ks..ke]).map_or(NO_SLOT, |s| s as u8)
            };
            let v = self.value()?;
            if slot != NO_SLOT {
                slots.spans[slot as usize] = v;
                slots.present |= 1u64 << slot;
            }
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        return Ok(());
                    }
                    _ => return self.err("expected ',' or '}'"),
                },
            }
        }
    }

    /// After the top-level value only white space may follow.
    pub fn end(&mut self) -> R<()> {
        if self.peek().is_some() {
            self.err("trailing characters after the frame")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &str) -> R<Slots> {
        let mut slots = Slots::default();
        let mut sc = Scanner::new(s.as_bytes());
        sc.object(&mut slots)?;
        sc.end()?;
        Ok(slots)
    }

    #[test]
    fn records_known_keys() {
        let s = r#"{"e":"trade", "E":12,"x":{"a":[1,"]"]},"p":"0.1","m":true,"zz":null}"#;
        let slots = scan(s).expect("valid");
        let e = slots.get(letter(b'e')).expect("e");
        assert_eq!(&s.as_bytes()[e.start as usize..e.end as usize], b"trade");
        assert_eq!(slots.get(letter(b'E')).map(|v| v.tag), Some(Tag::Num));
        assert_eq!(slots.get(letter(b'x')).map(|v| v.tag), Some(Tag::Obj));
        assert_eq!(slots.get(letter(b'm')).map(|v| v.tag), Some(Tag::True));
        assert!(!slots.has(letter(b'q')));
    }

    #[test]
    fn rejects_broken_structure() {
        let cases = [
            ("", "expected '{'"),
            ("{", "expected a key"),
            (r#"{"a":1"#, "expected ',' or '}'"),
            (r#"{"a":"x}"#, "unterminated string"),
            (r#"{"a":[1,2}"#, "mismatched bracket"),
            (r#"{"a":tru}"#, "invalid literal"),
            (r#"{"a":1} x"#, "trailing characters after the frame"),
            (r#"{"a":1,}"#, "expected a key"),
            (r#"{"a" 1}"#, "expected ':'"),
            (r#"{"a":"x\"#, "unterminated string"),
        ];
        for (input, what) in cases {
            assert_eq!(scan(input).err().map(|e| e.what), Some(what), "{input}");
        }
    }

    #[test]
    fn escaped_strings_are_tagged() {
        let slots = scan(r#"{"s":"A\"B"}"#).expect("valid");
        assert_eq!(
            slots.get(letter(b's')).map(|v| v.tag),
            Some(Tag::StrEscaped)
        );
    }
}
