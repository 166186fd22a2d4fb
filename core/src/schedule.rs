//! TODO(owner): schedule
