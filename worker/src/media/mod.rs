//! Media work of the worker: walking folders, probing files, planning and running
//! ffmpeg, and publishing outputs without ever exposing a half-written file.

pub mod backend;
pub mod ffmpeg;
pub mod formats;
pub mod plan;
pub mod probe;
pub mod staging;
pub mod walk;
