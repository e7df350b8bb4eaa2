"""A simulated Asterisk 22: serves AMI on TCP and opens FastAGI sessions to the edge."""
