//! Arbitrary bytes read as a stream of choices. An exhausted source answers zeros (and no to
//! every chance), so every byte string is a valid (if short) scenario and a shrunk input stays
//! meaningful.

pub struct Source<'a> {
    data: &'a [u8],
}

impl<'a> Source<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Source { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let wide = (usize::from(self.byte()) << 8) | usize::from(self.byte());
        wide % n.max(1)
    }

    /// One in `one_in`; never once the input is used up, so a loop on a chance ends.
    pub fn chance(&mut self, one_in: u8) -> bool {
        !self.is_empty() && self.byte() % one_in.max(1) == 0
    }

    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[self.below(items.len())]
    }

    pub fn i64(&mut self) -> i64 {
        let mut bytes = [0; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        i64::from_le_bytes(bytes)
    }

    /// Up to `max` bytes, as they come.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}
