//! Snapshot engines (Mattern, Chandy-Lamport) and the node runtime for shutter. Not yet implemented: see issue 4.
