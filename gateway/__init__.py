"""raygate core: plain async Python; importing it never imports Ray."""
