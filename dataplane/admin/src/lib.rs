//! mosn-admin (in progress)
