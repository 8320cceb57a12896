//! mosn-config (in progress)
