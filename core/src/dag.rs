//! TODO(owner): dag
