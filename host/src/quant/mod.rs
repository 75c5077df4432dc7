//! Quantisation: a trained checkpoint made into an int8 model file
//! ([`export`]) and a model file described layer by layer ([`inspect`]).
//! The int8 reference that runs model files on the workstation is
//! `device::reference`, beside the firmware it checks.

pub mod export;
pub mod inspect;
