//! SIP message model, parser, printer and stream framer. No I/O.
