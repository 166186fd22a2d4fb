//! TODO(owner): retry
