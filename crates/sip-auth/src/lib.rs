//! SIP digest authentication and ephemeral credentials. No I/O.
