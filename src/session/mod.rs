//! The shared entry point of the command line and the browser.
