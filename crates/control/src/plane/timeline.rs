//! The scenario's timeline, played in simulated time.

use super::*;

/// What [`ControlPlane::advance`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advance {
    /// The effects, each with the instant of its event, in order.
    pub effects: Vec<(SimTime, Effect)>,
    /// The events that broke a rule (and changed nothing).
    pub errors: Vec<ControlError>,
}

impl ControlPlane {
    /// Applies one event now.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Effect>, ControlError> {
        match event {
            Event::Request { endpoint, .. } => self.request(endpoint),
            Event::Approve { endpoint, .. } => self.approve(endpoint),
            Event::Reject { endpoint, .. } => self.reject(endpoint),
            Event::Remove { endpoint, .. } => self.remove(endpoint),
            Event::CreateEndpoint { endpoint, .. } => self.create_later(endpoint),
            Event::DeleteEndpoint { endpoint, .. } => self.delete_endpoint(endpoint),
            Event::DeleteService { service, .. } => self.delete_service(service),
            Event::BackendDown { backend, .. } => self.set_backend(*backend, false),
            Event::BackendUp { backend, .. } => self.set_backend(*backend, true),
            Event::AddNatIp { service, ip, .. } => self.add_nat_ip(service, *ip),
        }
    }

    /// Applies every timeline event due at or before `now`, in time order (file order among
    /// equal times), and returns their effects with the instant each takes effect. An event
    /// that breaks a rule changes nothing and is reported in [`Advance::errors`] as
    /// [`ControlError::Event`]; the others still apply. (A validated scenario has none.)
    pub fn advance(&mut self, now: SimTime) -> Advance {
        let mut out = Advance::default();
        while let Some((t, index, event)) = self.timeline.get(self.cursor).cloned() {
            if t > now {
                break;
            }
            self.cursor += 1;
            match self.apply(&event) {
                Ok(effects) => out.effects.extend(effects.into_iter().map(|e| (t, e))),
                Err(e) => out.errors.push(ControlError::Event {
                    index,
                    action: event.action(),
                    source: Box::new(e),
                }),
            }
        }
        out
    }
}
