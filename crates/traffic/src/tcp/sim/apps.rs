//! The applications on the hosts: clients that send the pattern and verify the echo, backends
//! that echo (after checking a PROXY protocol header, when one is due).

use std::net::SocketAddrV4;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

use super::{ClientConn, ServerConn, Tally, new_socket};
use crate::tcp::pattern::{count_matching, fill_pattern};
use crate::tcp::{EchoSpec, FIRST_CLIENT_PORT, ProxyExpect};

pub(super) fn listen(sockets: &mut SocketSet<'static>, port: u16, spec: &EchoSpec) -> SocketHandle {
    let mut s = new_socket(spec.buffer, spec.give_up);
    s.listen(port)
        .expect("a fresh socket listens on a non-zero port");
    sockets.add(s)
}

/// The client: send the pattern, verify what comes back, close once all came back.
pub(super) fn client_app(
    c: &mut ClientConn,
    sockets: &mut SocketSet<'static>,
    spec: &EchoSpec,
    t: &mut Tally,
) {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    let (seed, conn, bytes) = (spec.seed, c.conn, spec.bytes);
    while s.can_recv() {
        let received = c.received;
        let Ok((n, ok)) = s.recv(|data| {
            let want = bytes.saturating_sub(received).min(data.len() as u64) as usize;
            let ok = count_matching(seed, conn, received, &data[..want]);
            (data.len(), (data.len(), ok))
        }) else {
            break;
        };
        if n == 0 {
            break;
        }
        c.received += n as u64;
        c.verified += ok;
        t.bytes_verified += ok;
        t.bytes_mismatched += n as u64 - ok;
    }
    while c.sent < bytes && s.can_send() {
        let sent = c.sent;
        let n = s
            .send(|buf| {
                let n = (bytes - sent).min(buf.len() as u64) as usize;
                fill_pattern(seed, conn, sent, &mut buf[..n]);
                (n, n)
            })
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        c.sent += n as u64;
    }
    if !c.closing && c.received >= bytes && s.may_send() {
        s.close();
        c.closing = true;
    }
    let state = s.state();
    if c.closing && state == State::TimeWait {
        // A clean close; the connection completed if every byte came back right.
        c.done = true;
        if c.verified == bytes && c.received == bytes {
            t.completed += 1;
        }
    } else if state == State::Closed {
        c.done = true;
        t.aborted += 1;
    }
}

/// The backend: echo everything, close after the client did. Returns false once the socket has
/// ended (it is removed from the set then).
pub(super) fn server_app(
    c: &mut ServerConn,
    sockets: &mut SocketSet<'static>,
    spec: &EchoSpec,
    scratch: &mut [u8],
    t: &mut Tally,
) -> bool {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    if c.header_due
        && let Some(expect) = spec.proxy
        && s.can_recv()
    {
        proxy_header(c, s, spec, expect, scratch, t);
    }
    while !c.header_due && s.can_recv() && s.may_send() {
        let room = s.send_capacity() - s.send_queue();
        let room = room.min(scratch.len());
        if room == 0 {
            break;
        }
        let n = s.recv_slice(&mut scratch[..room]).unwrap_or(0);
        if n == 0 {
            break;
        }
        let sent = s.send_slice(&scratch[..n]).unwrap_or(0);
        debug_assert_eq!(sent, n, "the send buffer had room");
    }
    if !c.closing && s.state() == State::CloseWait && s.recv_queue() == 0 {
        s.close();
        c.closing = true;
    }
    match s.state() {
        State::Closed | State::TimeWait => {
            if c.closing {
                t.servers_closed += 1;
            } else {
                t.aborted += 1;
            }
            sockets.remove(c.handle);
            false
        }
        _ => true,
    }
}

/// Reads the PROXY protocol v2 header at the start of a backend connection's stream with the
/// `ppp` crate, checks it names a client of the run (each client once), the endpoint and the
/// expected link id, and strips it. A stream that can't start with one counts as bad and is
/// echoed as it is.
fn proxy_header(
    c: &mut ServerConn,
    s: &mut tcp::Socket<'static>,
    spec: &EchoSpec,
    expect: ProxyExpect,
    scratch: &mut [u8],
    t: &mut Tally,
) {
    let n = s.peek_slice(scratch).unwrap_or(0);
    let parsed = match ppp::v2::Header::try_from(&scratch[..n]) {
        Err(ppp::v2::ParseError::Incomplete(_) | ppp::v2::ParseError::Partial(..)) => return,
        Err(_) => None,
        Ok(h) => Some((h.len(), header_ok(&h, spec, expect))),
    };
    c.header_due = false;
    match parsed {
        Some((len, Some(client))) if t.proxied.insert(client) => {
            t.proxy_verified += 1;
            let _ = s.recv_slice(&mut scratch[..len]);
        }
        Some((len, _)) => {
            t.proxy_bad += 1;
            let _ = s.recv_slice(&mut scratch[..len]);
        }
        None => t.proxy_bad += 1,
    }
}

/// The client a parsed header names, when it is what the run expects: PROXY over TCP/IPv4,
/// from a client host of the run on a client port, to the endpoint, and one Azure TLV holding
/// the link id.
fn header_ok(
    h: &ppp::v2::Header<'_>,
    spec: &EchoSpec,
    expect: ProxyExpect,
) -> Option<SocketAddrV4> {
    use ppp::v2::{Addresses, Command, Protocol};
    if h.command != Command::Proxy || h.protocol != Protocol::Stream {
        return None;
    }
    let Addresses::IPv4(a) = h.addresses else {
        return None;
    };
    let first = u32::from(spec.first_client);
    let host = u32::from(a.source_address).wrapping_sub(first);
    let client_ok = host < spec.hosts_used() && a.source_port >= FIRST_CLIENT_PORT;
    let endpoint = SocketAddrV4::new(a.destination_address, a.destination_port);
    let mut tlvs = h.tlvs();
    let link = match (tlvs.next(), tlvs.next()) {
        (Some(Ok(tlv)), None) if tlv.kind == 0xEE && tlv.value.len() == 5 && tlv.value[0] == 1 => {
            Some(u32::from_le_bytes([
                tlv.value[1],
                tlv.value[2],
                tlv.value[3],
                tlv.value[4],
            ]))
        }
        _ => None,
    };
    (client_ok && endpoint == spec.endpoint && link == Some(expect.link_id))
        .then(|| SocketAddrV4::new(a.source_address, a.source_port))
}
