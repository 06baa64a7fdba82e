//! Routing conversations to people: pure, like the engine. The board holds a site's people
//! (availability, capacity, departments, languages) and the conversations waiting for one;
//! every operation takes `now` and answers what the desk must carry out.
//!
//! The rules:
//! - a waiting conversation is offered to an available person of its department with room
//!   (held + offered < capacity) who has not let it pass before; among them those who speak the
//!   visitor's language come first, then the least loaded (by share of capacity), then the one
//!   whose last assignment is oldest;
//! - waiting conversations are served by priority (higher first), then by how long they have
//!   waited, and the moment anyone frees up or comes online the queue is served again;
//! - an offer not accepted within `accept_ms` is withdrawn and the conversation offered to the
//!   next person;
//! - a conversation that has waited `wait_ms` without being accepted is missed: it leaves the
//!   board, and the desk offers the visitor an e-mail follow-up.

use std::collections::{BTreeMap, BTreeSet};

use beckon_engine::Timestamp;
use beckon_store::accounts::UserId;
use beckon_store::conversations::ConversationId;

/// One person of the site, as routing sees them.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    /// Whether they take conversations now.
    pub available: bool,
    /// The most they hold at once.
    pub capacity: u32,
    /// Their departments (none: all).
    pub departments: Vec<String>,
    /// Their languages (none: any).
    pub languages: Vec<String>,
    /// The conversations they hold.
    pub holding: BTreeSet<ConversationId>,
    /// When they were last given one.
    pub last_assigned: Timestamp,
}

impl Person {
    fn load(&self, offered: usize) -> usize {
        self.holding.len() + offered
    }

    fn takes(&self, department: Option<&str>) -> bool {
        match department {
            None => true,
            Some(d) => self.departments.is_empty() || self.departments.iter().any(|x| x == d),
        }
    }

    fn speaks(&self, language: &str) -> bool {
        !language.is_empty() && self.languages.iter().any(|l| l == language)
    }
}

/// A conversation waiting for a person.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// Its department.
    pub department: Option<String>,
    /// The visitor's language.
    pub language: String,
    /// Higher first.
    pub priority: i64,
    /// Since when it waits.
    pub since: Timestamp,
    /// To whom it is offered, since when.
    pub offered: Option<(UserId, Timestamp)>,
    /// Who let it pass (an offer that timed out, a decline).
    pub passed: BTreeSet<UserId>,
}

/// What the desk must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Offer the conversation to this person.
    Offer(ConversationId, UserId),
    /// The offer to this person is withdrawn (not accepted in time, or they went away).
    Withdraw(ConversationId, UserId),
    /// Nobody accepted in time: offer the visitor an e-mail follow-up.
    Missed(ConversationId),
}

/// Why an operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The person is not on the board.
    #[error("this person does not take conversations on this site")]
    UnknownPerson,
    /// The conversation is not waiting (already taken, missed or never asked for).
    #[error("this conversation is not waiting for a person")]
    NotWaiting,
    /// The person has no room.
    #[error("you already hold as many conversations as your capacity allows")]
    Full,
}

/// A site's routing board.
#[derive(Clone, Debug, PartialEq)]
pub struct Board {
    people: BTreeMap<UserId, Person>,
    waiting: BTreeMap<ConversationId, Waiting>,
    accept_ms: i64,
    wait_ms: i64,
}

impl Board {
    /// An empty board with the site's times.
    pub fn new(accept_ms: i64, wait_ms: i64) -> Board {
        Board {
            people: BTreeMap::new(),
            waiting: BTreeMap::new(),
            accept_ms: accept_ms.max(1000),
            wait_ms: wait_ms.max(1000),
        }
    }

    /// Changes the site's times (settings saved).
    pub fn set_times(&mut self, accept_ms: i64, wait_ms: i64) {
        self.accept_ms = accept_ms.max(1000);
        self.wait_ms = wait_ms.max(1000);
    }

    /// The people on the board.
    pub fn people(&self) -> &BTreeMap<UserId, Person> {
        &self.people
    }

    /// The conversations waiting, in the order they will be served.
    pub fn queue(&self) -> Vec<(&ConversationId, &Waiting)> {
        let mut q: Vec<_> = self.waiting.iter().collect();
        q.sort_by(|a, b| (b.1.priority, a.1.since, a.0).cmp(&(a.1.priority, b.1.since, b.0)));
        q
    }

    /// Whether a conversation waits.
    pub fn is_waiting(&self, c: &ConversationId) -> bool {
        self.waiting.contains_key(c)
    }

    /// Adds or updates a person (their profile), keeping what they hold.
    pub fn put_person(
        &mut self,
        user: UserId,
        capacity: u32,
        departments: Vec<String>,
        languages: Vec<String>,
        now: Timestamp,
    ) -> Vec<Step> {
        let p = self.people.entry(user).or_insert_with(|| Person {
            available: false,
            capacity,
            departments: Vec::new(),
            languages: Vec::new(),
            holding: BTreeSet::new(),
            last_assigned: Timestamp::from_millis(0),
        });
        p.capacity = capacity;
        p.departments = departments;
        p.languages = languages;
        self.serve(now)
    }

    /// A person comes online or goes away. Going away withdraws their offers (they are
    /// offered to others); what they hold stays theirs.
    pub fn set_available(
        &mut self,
        user: UserId,
        available: bool,
        now: Timestamp,
    ) -> Result<Vec<Step>, RouteError> {
        let p = self
            .people
            .get_mut(&user)
            .ok_or(RouteError::UnknownPerson)?;
        p.available = available;
        let mut steps = Vec::new();
        if !available {
            for (c, w) in self.waiting.iter_mut() {
                if w.offered.is_some_and(|(u, _)| u == user) {
                    w.offered = None;
                    steps.push(Step::Withdraw(c.clone(), user));
                }
            }
        }
        steps.extend(self.serve(now));
        Ok(steps)
    }

    /// A conversation asks for a person.
    pub fn request(
        &mut self,
        c: ConversationId,
        department: Option<String>,
        language: String,
        priority: i64,
        now: Timestamp,
    ) -> Vec<Step> {
        self.waiting.entry(c).or_insert(Waiting {
            department,
            language,
            priority,
            since: now,
            offered: None,
            passed: BTreeSet::new(),
        });
        self.serve(now)
    }

    /// A person accepts a waiting conversation: the one offered to them, or any from the
    /// queue while they have room.
    pub fn accept(
        &mut self,
        c: &ConversationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<Step>, RouteError> {
        let w = self.waiting.get(c).ok_or(RouteError::NotWaiting)?;
        let offered_to_them = w.offered.is_some_and(|(u, _)| u == user);
        let others_offer = w.offered.filter(|(u, _)| *u != user).map(|(u, _)| u);
        let load = self.offered_count(user);
        let p = self.people.get(&user).ok_or(RouteError::UnknownPerson)?;
        let room = offered_to_them || p.load(load) < p.capacity as usize;
        if !room {
            return Err(RouteError::Full);
        }
        self.waiting.remove(c);
        let p = self.people.get_mut(&user).expect("checked above");
        p.holding.insert(c.clone());
        p.last_assigned = now;
        let mut steps = Vec::new();
        if let Some(other) = others_offer {
            steps.push(Step::Withdraw(c.clone(), other));
        }
        steps.extend(self.serve(now));
        Ok(steps)
    }

    /// A person lets an offered conversation pass: it goes to the next one.
    pub fn decline(
        &mut self,
        c: &ConversationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Vec<Step>, RouteError> {
        let w = self.waiting.get_mut(c).ok_or(RouteError::NotWaiting)?;
        if w.offered.is_some_and(|(u, _)| u == user) {
            w.offered = None;
        }
        w.passed.insert(user);
        Ok(self.serve(now))
    }

    /// A person takes a conversation directly (they started it, or it was transferred to
    /// them), whatever their load.
    pub fn hold(&mut self, c: &ConversationId, user: UserId, now: Timestamp) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(w) = self.waiting.remove(c)
            && let Some((u, _)) = w.offered
            && u != user
        {
            steps.push(Step::Withdraw(c.clone(), u));
        }
        if let Some(p) = self.people.get_mut(&user) {
            p.holding.insert(c.clone());
            p.last_assigned = now;
        }
        steps.extend(self.serve(now));
        steps
    }

    /// A conversation leaves the board (closed, missed, transferred): whoever held it, or had
    /// it offered, has room again and the queue is served.
    pub fn release(&mut self, c: &ConversationId, now: Timestamp) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(w) = self.waiting.remove(c)
            && let Some((u, _)) = w.offered
        {
            steps.push(Step::Withdraw(c.clone(), u));
        }
        for p in self.people.values_mut() {
            p.holding.remove(c);
        }
        steps.extend(self.serve(now));
        steps
    }

    /// Time passes: offers not accepted in time move on, conversations that waited too long
    /// are missed.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Step> {
        let mut steps = Vec::new();
        let missed: Vec<ConversationId> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.as_millis() - w.since.as_millis() >= self.wait_ms)
            .map(|(c, _)| c.clone())
            .collect();
        for c in missed {
            if let Some(w) = self.waiting.remove(&c)
                && let Some((u, _)) = w.offered
            {
                steps.push(Step::Withdraw(c.clone(), u));
            }
            steps.push(Step::Missed(c));
        }
        for (c, w) in self.waiting.iter_mut() {
            if let Some((u, at)) = w.offered
                && now.as_millis() - at.as_millis() >= self.accept_ms
            {
                w.offered = None;
                w.passed.insert(u);
                steps.push(Step::Withdraw(c.clone(), u));
            }
        }
        steps.extend(self.serve(now));
        steps
    }

    /// The next instant at which [`Board::tick`] could change anything.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.waiting
            .values()
            .flat_map(|w| {
                let wait = w.since.as_millis() + self.wait_ms;
                let offer = w.offered.map(|(_, at)| at.as_millis() + self.accept_ms);
                std::iter::once(wait).chain(offer)
            })
            .min()
            .map(Timestamp::from_millis)
    }

    fn offered_count(&self, user: UserId) -> usize {
        self.waiting
            .values()
            .filter(|w| w.offered.is_some_and(|(u, _)| u == user))
            .count()
    }

    /// Offers every waiting conversation that has no offer to the best person with room.
    fn serve(&mut self, now: Timestamp) -> Vec<Step> {
        let order: Vec<ConversationId> = self
            .queue()
            .into_iter()
            .filter(|(_, w)| w.offered.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let mut steps = Vec::new();
        for c in order {
            let w = &self.waiting[&c];
            let best = self
                .people
                .iter()
                .filter(|(u, p)| {
                    p.available
                        && p.takes(w.department.as_deref())
                        && !w.passed.contains(u)
                        && p.load(self.offered_count(**u)) < p.capacity as usize
                })
                .min_by(|(ua, a), (ub, b)| {
                    let share = |u: UserId, p: &Person| {
                        p.load(self.offered_count(u)) as f64 / f64::from(p.capacity.max(1))
                    };
                    (!a.speaks(&w.language))
                        .cmp(&!b.speaks(&w.language))
                        .then(share(**ua, a).total_cmp(&share(**ub, b)))
                        .then(a.last_assigned.cmp(&b.last_assigned))
                        .then(ua.cmp(ub))
                })
                .map(|(u, _)| *u);
            if let Some(u) = best {
                self.waiting.get_mut(&c).expect("listed above").offered = Some((u, now));
                if let Some(p) = self.people.get_mut(&u) {
                    p.last_assigned = now;
                }
                steps.push(Step::Offer(c, u));
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + s * 1000)
    }

    fn c(n: u32) -> ConversationId {
        ConversationId::from_random(&format!("{n:0>20}")).unwrap()
    }

    fn board() -> Board {
        let mut b = Board::new(30_000, 120_000);
        b.put_person(1, 2, vec!["support".into()], vec!["en".into()], at(0));
        b.put_person(2, 2, vec![], vec!["fr".into()], at(0));
        b
    }

    #[test]
    fn nobody_online_queues_and_the_first_to_come_online_gets_it() {
        let mut b = board();
        assert!(
            b.request(c(1), Some("support".into()), "en".into(), 0, at(0))
                .is_empty()
        );
        assert!(b.is_waiting(&c(1)));
        let steps = b.set_available(2, true, at(5)).unwrap();
        assert_eq!(steps, vec![Step::Offer(c(1), 2)]);
    }

    #[test]
    fn a_speaker_of_the_language_comes_first_then_the_least_loaded() {
        let mut b = board();
        b.set_available(1, true, at(0)).unwrap();
        b.set_available(2, true, at(0)).unwrap();
        let steps = b.request(c(1), None, "fr".into(), 0, at(1));
        assert_eq!(steps, vec![Step::Offer(c(1), 2)], "the French speaker");
        b.accept(&c(1), 2, at(2)).unwrap();
        let steps = b.request(c(2), None, "de".into(), 0, at(3));
        assert_eq!(
            steps,
            vec![Step::Offer(c(2), 1)],
            "nobody speaks German: the least loaded"
        );
    }

    #[test]
    fn an_offer_not_accepted_in_time_moves_on_and_a_long_wait_is_missed() {
        let mut b = board();
        b.set_available(1, true, at(0)).unwrap();
        b.set_available(2, true, at(0)).unwrap();
        let first = b.request(c(1), Some("support".into()), "en".into(), 0, at(0));
        assert_eq!(first, vec![Step::Offer(c(1), 1)]);
        assert_eq!(b.next_wake(), Some(at(30)));
        assert!(b.tick(at(29)).is_empty());
        let moved = b.tick(at(30));
        assert_eq!(moved, vec![Step::Withdraw(c(1), 1), Step::Offer(c(1), 2)]);
        let moved = b.tick(at(60));
        assert_eq!(
            moved,
            vec![Step::Withdraw(c(1), 2)],
            "both let it pass; it waits"
        );
        let missed = b.tick(at(120));
        assert_eq!(missed, vec![Step::Missed(c(1))]);
        assert!(!b.is_waiting(&c(1)));
    }

    #[test]
    fn the_queue_is_served_by_priority_the_moment_someone_frees_up() {
        let mut b = Board::new(30_000, 600_000);
        b.put_person(1, 1, vec![], vec![], at(0));
        b.set_available(1, true, at(0)).unwrap();
        b.request(c(1), None, "en".into(), 0, at(0));
        b.accept(&c(1), 1, at(1)).unwrap();
        assert!(
            b.request(c(2), None, "en".into(), 10, at(2)).is_empty(),
            "full"
        );
        assert!(
            b.request(c(3), None, "en".into(), 500, at(3)).is_empty(),
            "full"
        );
        assert_eq!(b.queue()[0].0, &c(3), "the bigger cart first");
        let freed = b.release(&c(1), at(4));
        assert_eq!(freed, vec![Step::Offer(c(3), 1)]);
        assert_eq!(b.accept(&c(2), 1, at(5)), Err(RouteError::Full));
    }

    #[test]
    fn going_away_withdraws_offers_and_unknown_people_are_refused() {
        let mut b = board();
        b.set_available(1, true, at(0)).unwrap();
        b.request(c(1), Some("support".into()), "en".into(), 0, at(0));
        let away = b.set_available(1, false, at(1)).unwrap();
        assert_eq!(away, vec![Step::Withdraw(c(1), 1)]);
        assert_eq!(
            b.set_available(9, true, at(1)),
            Err(RouteError::UnknownPerson)
        );
        assert_eq!(b.accept(&c(7), 1, at(1)), Err(RouteError::NotWaiting));
    }

    proptest! {
        /// Whatever happens, nobody holds or is offered more than their capacity, a conversation
        /// is offered to one person at most, and nobody available with room is idle while a
        /// conversation they could take waits unoffered.
        #[test]
        fn capacity_holds_and_nobody_with_room_sits_idle(ops in prop::collection::vec((0u8..6, 0u32..6, 1i64..3), 1..80)) {
            let mut b = Board::new(30_000, 90_000);
            for u in 1..=3 {
                b.put_person(u, u as u32, vec![], vec![], at(0));
            }
            let mut t = 0;
            for (op, n, who) in ops {
                t += 7;
                let now = at(t);
                match op {
                    0 | 1 => { b.request(c(n), None, "en".into(), i64::from(n), now); }
                    2 => { let _ = b.accept(&c(n), who, now); }
                    3 => { b.release(&c(n), now); }
                    4 => { let _ = b.set_available(who, n % 2 == 0, now); }
                    _ => { b.tick(now); }
                }
                for (u, p) in b.people() {
                    prop_assert!(p.load(b.offered_count(*u)) <= p.capacity as usize);
                }
                for (conv, w) in b.queue() {
                    if w.offered.is_none() {
                        for (u, p) in b.people() {
                            let idle = p.available && !w.passed.contains(u)
                                && p.load(b.offered_count(*u)) < p.capacity as usize;
                            prop_assert!(!idle, "{conv} waits while {u} has room");
                        }
                    }
                }
            }
        }
    }
}
