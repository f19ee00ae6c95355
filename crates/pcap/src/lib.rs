//! Reading pcap and pcapng captures and writing classic pcap (not yet written).
