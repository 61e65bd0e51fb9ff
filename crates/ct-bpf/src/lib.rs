//! Kernel side (filled by the ct-bpf issue).
