//! The CRI log format: `<RFC3339Nano> stdout|stderr F|P <line>`, with a size cap and rotation.
// STUB (main only, replaced by rt-security)
#[derive(Debug, Clone, Copy)]
pub enum Stream { Stdout, Stderr }
pub struct LogOptions { pub max_size_bytes: u64, pub max_files: usize }
pub struct LogWriter;
impl LogWriter {
    pub fn open(_: &std::path::Path, _: LogOptions) -> std::io::Result<Self> { Ok(Self) }
    pub fn write(&mut self, _: Stream, _: &[u8]) -> std::io::Result<()> { Ok(()) }
    pub fn finish(&mut self) -> std::io::Result<()> { Ok(()) }
}
