//! The driver on its own, through a toy path (the real stages are in `tests/tcp*.rs`).

use super::*;
use plsim_wire::{Ipv4Tcp, TcpFlags, checksum};

const PE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
const B: Ipv4Addr = Ipv4Addr::new(10, 10, 2, 4);

/// Rewrites the destination PE -> B on the way in and the source B -> PE on the way back
/// (no NAT), checking every checksum it sees; or drops everything with `drop`; or, with
/// `refuse_syns`, drops every SYN and answers it with a RST, as a path out of NAT ports does.
#[derive(Default)]
struct Toy {
    drop: Option<DropReason>,
    refuse_syns: bool,
    seen: u64,
    bad_checksums: u64,
    ticks: u64,
}

impl Toy {
    fn check(&mut self, packet: &[u8], view: &Ipv4Tcp) {
        self.seen += 1;
        if !checksum::verify(packet, view).ok() {
            self.bad_checksums += 1;
        }
    }
}

impl Path for Toy {
    fn send(
        &mut self,
        packet: &mut [u8],
        dir: Dir,
        _now: SimTime,
        out: &mut Vec<Delivery>,
    ) -> Option<DropReason> {
        let view = plsim_wire::classify_l3(packet).expect("hosts send IPv4 TCP");
        self.check(packet, &view);
        let t = view.tuple();
        if dir == Dir::Forward {
            if let Some(r) = self.drop {
                return Some(r);
            }
            if self.refuse_syns && view.flags() & TcpFlags::SYN != 0 {
                let mut rst =
                    plsim_wire::build::TcpSegment::new(t.reversed(), TcpFlags::RST | TcpFlags::ACK);
                rst.ack = view.seq(packet).wrapping_add(1);
                out.push(Delivery {
                    dir: Dir::Reverse,
                    own: true,
                    packet: rst.to_vec()[14..].to_vec(),
                });
                return Some(DropReason::PortExhausted);
            }
            assert_eq!(t.dst, PE);
            let mut view = view;
            view.set_destination(packet, B, t.dport);
        } else {
            assert_eq!(t.src, B);
            let mut view = view;
            view.set_source(packet, PE, t.sport);
        }
        out.push(Delivery {
            dir,
            own: false,
            packet: packet.to_vec(),
        });
        None
    }
    fn tick(&mut self, _now: SimTime) {
        self.ticks += 1;
    }
}

fn spec(connections: u32, bytes: u64) -> EchoSpec {
    let mut s = EchoSpec::new(SocketAddrV4::new(PE, 443), vec![SocketAddrV4::new(B, 443)]);
    s.connections = connections;
    s.bytes = bytes;
    s.seed = 7;
    s
}

fn balanced(o: &EchoOutcome) -> bool {
    o.consumer_in + o.backend_in
        == o.to_backend + o.to_consumer + o.dropped.total() + o.undeliverable + o.in_flight
}

#[test]
fn one_small_echo_completes_with_exact_counts() {
    let (o, toy) = run_echo(Toy::default(), &spec(1, 3000)).unwrap();
    assert_eq!(o.end, End::AllClosed);
    assert_eq!(
        (o.connections, o.completed, o.servers_closed, o.aborted),
        (1, 1, 1, 0)
    );
    assert_eq!((o.bytes_verified, o.bytes_mismatched), (3000, 0));
    assert_eq!(o.payload_sent, 6000);
    assert_eq!(toy.bad_checksums, 0);
    assert_eq!(toy.seen, o.consumer_in + o.backend_in);
    assert_eq!(o.dropped.total(), 0);
    assert_eq!((o.undeliverable, o.in_flight, o.corrupted), (0, 0, 0));
    assert!(balanced(&o));
    // SYN, SYN-ACK, ACK at least, data both ways, FIN both ways.
    assert!(
        o.consumer_in >= 6 && o.backend_in >= 4,
        "{o:?}",
        o = (o.consumer_in, o.backend_in)
    );
    // The run lingers 241 s after the last packet.
    let last = o.last_ts.unwrap();
    assert!(o.sim_time >= last + Duration::from_secs(241));
    assert!(o.sim_time <= last + Duration::from_secs(242));
}

#[test]
fn a_run_is_deterministic() {
    let a = run_echo(Toy::default(), &spec(5, 20_000)).unwrap();
    let b = run_echo(Toy::default(), &spec(5, 20_000)).unwrap();
    assert_eq!(a.0.completed, 5);
    let key = |(o, toy): &(EchoOutcome, Toy)| {
        (
            o.consumer_in,
            o.backend_in,
            o.steps,
            o.sim_time,
            o.last_ts,
            toy.ticks,
        )
    };
    assert_eq!(key(&a), key(&b));
}

#[test]
fn zero_bytes_still_opens_and_closes() {
    let (o, _) = run_echo(Toy::default(), &spec(3, 0)).unwrap();
    assert_eq!(
        (o.end, o.completed, o.servers_closed, o.aborted),
        (End::AllClosed, 3, 3, 0)
    );
    assert_eq!((o.bytes_verified, o.payload_sent), (0, 0));
}

#[test]
fn more_connections_than_hosts_share_hosts_on_other_ports() {
    let mut s = spec(5, 2000);
    s.client_hosts = 2;
    let (o, _) = run_echo(Toy::default(), &s).unwrap();
    assert_eq!(
        (o.completed, o.servers_closed, o.bytes_verified),
        (5, 5, 10_000)
    );
}

#[test]
fn a_path_that_drops_everything_aborts_every_connection() {
    let mut s = spec(2, 1000);
    s.give_up = Duration::from_secs(5);
    let toy = Toy {
        drop: Some(DropReason::NoRule),
        ..Toy::default()
    };
    let (o, _) = run_echo(toy, &s).unwrap();
    assert_eq!(o.end, End::AllClosed);
    assert_eq!((o.completed, o.aborted, o.servers_closed), (0, 2, 0));
    assert_eq!(o.backend_in, 0);
    assert_eq!(o.dropped.get(DropReason::NoRule), o.consumer_in);
    // Each client sent its SYN and retransmitted it before giving up.
    assert!(o.consumer_in >= 4);
    assert!(balanced(&o));
}

#[test]
fn answers_reach_the_clients_and_end_their_connections_at_once() {
    let mut s = spec(3, 1000);
    s.give_up = Duration::from_secs(30);
    let toy = Toy {
        refuse_syns: true,
        ..Toy::default()
    };
    let (o, _) = run_echo(toy, &s).unwrap();
    assert_eq!(o.end, End::AllClosed);
    // One SYN each, refused and answered: each client's connection is reset at once, long
    // before it would give up.
    assert_eq!((o.consumer_in, o.answers), (3, 3));
    assert_eq!((o.completed, o.aborted, o.backend_in), (0, 3, 0));
    assert_eq!(o.dropped.get(DropReason::PortExhausted), 3);
    assert!(o.last_ts.unwrap() < SimTime::from_secs(1));
    assert!(balanced(&o));
}

#[test]
fn corrupted_packets_are_dropped_by_smoltcp_and_retransmitted() {
    let mut s = spec(2, 50_000);
    s.corrupt_every = 7;
    let (o, _) = run_echo(Toy::default(), &s).unwrap();
    assert_eq!((o.completed, o.servers_closed, o.aborted), (2, 2, 0));
    // Had smoltcp taken a corrupted byte, the client's verification would have caught it.
    assert_eq!((o.bytes_verified, o.bytes_mismatched), (100_000, 0));
    assert!(o.corrupted > 0);
    assert!(
        o.payload_sent > 200_000,
        "retransmissions: {}",
        o.payload_sent
    );
}

#[test]
fn step_and_time_limits_stop_a_run() {
    let mut s = spec(3, 100_000);
    s.max_steps = 10;
    let (o, _) = run_echo(Toy::default(), &s).unwrap();
    assert_eq!((o.end, o.steps), (End::StepLimit, 10));
    assert_eq!(o.completed, 0);
    assert!(balanced(&o));

    let mut s = spec(3, 100_000);
    s.time_limit = Duration::from_millis(1);
    let (o, _) = run_echo(Toy::default(), &s).unwrap();
    assert_eq!(o.end, End::TimeLimit);
    assert!(o.sim_time <= SimTime::from_millis(1));
    assert!(balanced(&o));
}

#[test]
fn bad_specs_are_refused_with_the_reason() {
    let base = spec(1, 10);
    let mut s = base.clone();
    s.backends.clear();
    assert_eq!(s.check(), Err(EchoError::NoBackends));
    let mut s = base.clone();
    s.client_hosts = 0;
    assert_eq!(s.check(), Err(EchoError::NoClientHosts));
    let mut s = base.clone();
    s.endpoint.set_port(0);
    assert_eq!(s.check(), Err(EchoError::PortZero("the endpoint")));
    let mut s = base.clone();
    s.backends.push(SocketAddrV4::new(B, 80));
    assert_eq!(s.check(), Err(EchoError::AddressClash(B)));
    let mut s = base.clone();
    s.first_client = B;
    assert_eq!(s.check(), Err(EchoError::AddressClash(B)));
    let mut s = base.clone();
    s.first_client = Ipv4Addr::new(255, 255, 255, 255);
    s.connections = 2;
    assert_eq!(
        s.check(),
        Err(EchoError::ClientsOverflow(s.first_client, 2))
    );
    let mut s = base.clone();
    s.client_hosts = 1;
    s.connections = 25_537;
    assert_eq!(
        s.check(),
        Err(EchoError::TooManyConnections {
            connections: 25_537,
            capacity: 25_536
        })
    );
    let mut s = base.clone();
    s.buffer = 100;
    assert_eq!(s.check(), Err(EchoError::BufferTooSmall(100)));
    assert!(run_echo(Toy::default(), &s).is_err());
    assert_eq!(base.check(), Ok(()));
}
