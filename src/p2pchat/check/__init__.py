"""``p2pchat check``: conformance checks of any implementation of the protocol, from outside."""
