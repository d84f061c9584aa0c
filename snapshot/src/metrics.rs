//! Coming next (issue 4).
