//! mosn-wire: the PROTOCOL layer's pure codecs (no IO, no tokio). Work in progress.
#![forbid(unsafe_code)]
