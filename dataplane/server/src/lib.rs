//! mosn-server (in progress)
