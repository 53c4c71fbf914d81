"""Pure rendering of model objects into iptables chains (rule-body strings) and ipset names."""
