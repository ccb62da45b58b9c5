//! The Templates pages: the editor of one template with its live preview (`editor`).

pub mod editor;
