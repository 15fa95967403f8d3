"""The Wi-Fi gateway: the nftables table, client sessions and quotas, the portal's backend."""
