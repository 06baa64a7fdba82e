//! Placeholder: being ported from the SQLite backend.
