//! Quantisation: a trained checkpoint made into an int8 model file
//! ([`export`]), a model file described layer by layer ([`inspect`]), and
//! the host's int8 reference of every network ([`reference`](mod@reference)).

pub mod export;
pub mod inspect;
pub mod reference;
