"""Who may reach the server and how: TLS and restricted groups of protocols."""
