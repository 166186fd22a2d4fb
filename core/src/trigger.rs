//! TODO(owner): trigger
