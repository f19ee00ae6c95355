//! A connection record of the core ([`Conn`]): the load balancer's and the SNAT's parts of one
//! connection, the addresses its three keys are made of, and the hashes of those keys
//! (`docs/architecture.md`, section 4).

use plsim_flowtab::{ConnRecord, KEYS};
use plsim_lb::LbFlow;
use plsim_snat::{SnatFlow, SnatKey};
use plsim_wire::hash::fold2;

/// The bytes each stage's part takes in a connection record: the load balancer's, the
/// SNAT's.
pub fn part_bytes() -> (usize, usize) {
    (size_of::<LbFlow>(), size_of::<SnatFlow>())
}

/// The load balancer's part lives.
pub(super) const LB: u8 = 1;
/// The SNAT's part lives.
pub(super) const SNAT: u8 = 2;

/// One connection of the core. 64 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conn {
    /// The load balancer's part (when [`LB`]).
    pub(super) lb: LbFlow,
    /// The SNAT's part (when [`SNAT`]).
    pub(super) snat: SnatFlow,
    /// The link id; in a vacant slot, the next vacant slot.
    pub(super) link: u32,
    /// The consumer (C).
    pub(super) c_ip: u32,
    /// The frontend (F) the consumer sent to.
    pub(super) f_ip: u32,
    /// The backend (B) the flow left the load balancer for.
    pub(super) b_ip: u32,
    pub(super) c_port: u16,
    pub(super) f_port: u16,
    pub(super) b_port: u16,
    /// The SNAT engine (service) of the SNAT's part.
    pub(super) service: u8,
    /// Which parts live ([`LB`], [`SNAT`]); 0 in a vacant slot.
    pub(super) parts: u8,
    pub(super) generation: u32,
}

/// The hash of the consumer's tuple `C:cp -> F:fp` of `link` (the load balancer's forward key).
#[inline]
pub(super) fn consumer_hash(link: u32, c_ip: u32, c_port: u16, f_ip: u32, f_port: u16) -> u64 {
    fold2(
        u64::from(link) << 32 | u64::from(c_ip),
        u64::from(c_port) << 48 | u64::from(f_port) << 32 | u64::from(f_ip),
    )
}

/// The hash of the flow as it left the load balancer, `C:cp -> B:bp` of `link` (the load
/// balancer's return key and the SNAT's forward key: one flow of each at most).
#[inline]
pub(super) fn leaving_hash(link: u32, c_ip: u32, c_port: u16, b_ip: u32, b_port: u16) -> u64 {
    fold2(
        (u64::from(link) << 32 | u64::from(c_ip)) ^ 0x9e37_79b9_7f4a_7c15,
        u64::from(c_port) << 48 | u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

/// The hash of the backend-side tuple `B:bp -> N:np`, N being NAT IP `nat` of engine `service`.
#[inline]
pub(super) fn backend_hash(service: u8, nat: u8, n_port: u16, b_ip: u32, b_port: u16) -> u64 {
    fold2(
        (u64::from(service) << 24 | u64::from(nat) << 16 | u64::from(n_port))
            ^ 0xc2b2_ae3d_27d4_eb4f,
        u64::from(b_port) << 32 | u64::from(b_ip),
    )
}

impl Conn {
    #[inline]
    pub(super) fn has(&self, part: u8) -> bool {
        self.parts & part != 0
    }
    #[inline]
    pub(super) fn snat_key(&self) -> SnatKey {
        SnatKey {
            link: self.link,
            c_ip: self.c_ip,
            b_ip: self.b_ip,
            c_port: self.c_port,
            b_port: self.b_port,
        }
    }
    #[inline]
    pub(super) fn is_consumer(
        &self,
        link: u32,
        c_ip: u32,
        c_port: u16,
        f_ip: u32,
        f_port: u16,
    ) -> bool {
        self.has(LB)
            && self.link == link
            && self.c_ip == c_ip
            && self.c_port == c_port
            && self.f_ip == f_ip
            && self.f_port == f_port
    }
    #[inline]
    pub(super) fn is_leaving(&self, k: &SnatKey) -> bool {
        self.parts != 0
            && self.link == k.link
            && self.c_ip == k.c_ip
            && self.c_port == k.c_port
            && self.b_ip == k.b_ip
            && self.b_port == k.b_port
    }
    #[inline]
    pub(super) fn is_backend(
        &self,
        service: u8,
        nat: u8,
        n_port: u16,
        b_ip: u32,
        b_port: u16,
    ) -> bool {
        self.has(SNAT)
            && self.service == service
            && self.snat.nat() == nat
            && self.snat.n_port() == n_port
            && self.b_ip == b_ip
            && self.b_port == b_port
    }
}

impl ConnRecord for Conn {
    #[inline]
    fn keys(&self) -> [Option<u64>; KEYS] {
        [
            self.has(LB)
                .then(|| consumer_hash(self.link, self.c_ip, self.c_port, self.f_ip, self.f_port)),
            (self.parts != 0)
                .then(|| leaving_hash(self.link, self.c_ip, self.c_port, self.b_ip, self.b_port)),
            self.has(SNAT).then(|| {
                backend_hash(
                    self.service,
                    self.snat.nat(),
                    self.snat.n_port(),
                    self.b_ip,
                    self.b_port,
                )
            }),
        ]
    }
    #[inline]
    fn is_live(&self) -> bool {
        self.parts != 0
    }
    #[inline]
    fn generation(&self) -> u32 {
        self.generation
    }
    #[inline]
    fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }
    #[inline]
    fn make_vacant(&mut self, next: u32) {
        self.parts = 0;
        self.link = next;
    }
    #[inline]
    fn next_vacant(&self) -> u32 {
        self.link
    }
}
