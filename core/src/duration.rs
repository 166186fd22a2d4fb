//! TODO(owner): duration
