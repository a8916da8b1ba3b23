//! Disentanglement metrics (in progress).
