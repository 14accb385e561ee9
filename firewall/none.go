package firewall

var (
	_ Enforcer = (*None)(nil)
	_ Enforcer = (*NFT)(nil)
)
