//! TODO(owner): template
