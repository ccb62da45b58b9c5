//! Email templates: what a template can say (`context`), which template an event gets
//! (`choose`), a body written as HTML or MJML (`body`), turning it into a subject, HTML and text
//! (`render`), the built-in defaults (`defaults`), templates as files (`files`), and money
//! formatting (`money`). All pure; storage is in `db::templates`.

pub mod body;
pub mod choose;
pub mod context;
pub mod defaults;
pub mod files;
pub mod money;
pub mod render;
