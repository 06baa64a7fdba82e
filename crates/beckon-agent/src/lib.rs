pub mod knowledge;
pub mod routing;
pub mod scope;
