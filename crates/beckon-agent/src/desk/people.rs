//! The site's people at the desk: availability, accepting, replying, transferring, closing,
//! starting a conversation with a visitor, and the board as the console shows it.

use beckon_store::accounts::UserId;
use beckon_store::conversations::{
    Attachment, Author, Closer, Conversation, ConversationChange, ConversationId, FileRecord,
    Message, NewMessage, Origin, Status,
};

use super::{Desk, DeskError, HISTORY, Live, Update, check_text, new_id, started};
use crate::routing::RouteError;

/// A person of the site acting at the desk (their membership was checked by the caller).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRef {
    /// The site.
    pub site: beckon_engine::SiteId,
    /// The person.
    pub user: UserId,
    /// How they are shown to visitors.
    pub name: String,
    /// Whether they may end or pass on a conversation someone else holds (an administrator).
    pub supervisor: bool,
}

impl AgentRef {
    /// Refuses a change to a conversation another person holds, unless this one supervises.
    fn may_change(&self, c: &Conversation) -> Result<(), DeskError> {
        let held_by_other =
            c.status == Status::Active && c.assignee.is_some_and(|u| u != self.user);
        if held_by_other && !self.supervisor {
            return Err(DeskError::Conflict(
                "someone else holds this conversation".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Where a conversation is transferred.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// To a department's queue.
    Department(String),
    /// To one person.
    Person(UserId),
}

/// One person on the board, for the console.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonView {
    /// Who.
    pub user: UserId,
    /// Their name.
    pub name: String,
    /// Whether they take conversations now.
    pub available: bool,
    /// How many they hold.
    pub holding: usize,
    /// How many they may hold.
    pub capacity: u32,
}

/// A waiting conversation, for the console.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitingView {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its department.
    pub department: Option<String>,
    /// Its priority.
    pub priority: i64,
    /// To whom it is offered now.
    pub offered_to: Option<UserId>,
}

/// A site's board, for the console.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct BoardView {
    /// The people.
    pub people: Vec<PersonView>,
    /// The queue, in serving order.
    pub queue: Vec<WaitingView>,
}

fn route(e: RouteError) -> DeskError {
    DeskError::Conflict(e.to_string())
}

impl Desk {
    /// Puts a person on the site's board with their profile (from the store) and availability.
    pub async fn set_available(&self, agent: &AgentRef, available: bool) -> Result<(), DeskError> {
        let profiles = self.store().agent_profiles(&agent.site).await?;
        let profile = profiles
            .into_iter()
            .find(|p| p.user == agent.user)
            .unwrap_or(beckon_store::conversations::AgentProfile {
                user: agent.user,
                ..Default::default()
            });
        let now = self.now();
        let steps = self.with_site(&agent.site, |d| {
            d.names.insert(agent.user, agent.name.clone());
            let mut steps = d.board.put_person(
                agent.user,
                profile.capacity.max(1),
                profile.departments.clone(),
                profile.languages.clone(),
                now,
            );
            steps.extend(
                d.board
                    .set_available(agent.user, available, now)
                    .expect("just put on the board"),
            );
            steps
        });
        for s in steps {
            self.carry_out(&agent.site, s).await;
        }
        self.inner.watch.publish_board(&agent.site);
        Ok(())
    }

    /// Whether a person is available on a site.
    pub fn is_available(&self, agent: &AgentRef) -> bool {
        self.with_site(&agent.site, |d| {
            d.board
                .people()
                .get(&agent.user)
                .is_some_and(|p| p.available)
        })
    }

    /// The board as the console shows it.
    pub fn board(&self, site: &beckon_engine::SiteId) -> BoardView {
        self.with_site(site, |d| BoardView {
            people: d
                .board
                .people()
                .iter()
                .map(|(u, p)| PersonView {
                    user: *u,
                    name: d.names.get(u).cloned().unwrap_or_else(|| format!("#{u}")),
                    available: p.available,
                    holding: p.holding.len(),
                    capacity: p.capacity,
                })
                .collect(),
            queue: d
                .board
                .queue()
                .into_iter()
                .map(|(c, w)| WaitingView {
                    conversation: c.clone(),
                    department: w.department.clone(),
                    priority: w.priority,
                    offered_to: w.offered.map(|(u, _)| u),
                })
                .collect(),
        })
    }

    /// A person accepts a waiting conversation (offered to them, or picked from the queue).
    pub async fn accept(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
    ) -> Result<Conversation, DeskError> {
        let c = self.conversation(&agent.site, id).await?;
        if c.status == Status::Active && c.assignee == Some(agent.user) {
            return Ok(c);
        }
        if !matches!(c.status, Status::Queued | Status::Offered) {
            return Err(DeskError::Conflict(
                "this conversation is not waiting for a person".to_owned(),
            ));
        }
        let now = self.now();
        let steps = self.with_site(&agent.site, |d| {
            d.names.insert(agent.user, agent.name.clone());
            d.board.accept(id, agent.user, now)
        });
        let steps = steps.map_err(route)?;
        let taken = self.take(agent, &c).await?;
        for s in steps {
            self.carry_out(&agent.site, s).await;
        }
        self.inner.watch.publish_board(&agent.site);
        Ok(taken)
    }

    async fn take(&self, agent: &AgentRef, c: &Conversation) -> Result<Conversation, DeskError> {
        let taken = self
            .change(
                &agent.site,
                &c.id,
                ConversationChange {
                    status: Some(Status::Active),
                    assignee: Some(Some(agent.user)),
                    ..ConversationChange::default()
                },
            )
            .await?;
        self.notice(&taken, format!("{} joined the chat.", agent.name))
            .await?;
        Ok(taken)
    }

    /// A person lets an offered conversation pass to the next one.
    pub async fn decline(&self, agent: &AgentRef, id: &ConversationId) -> Result<(), DeskError> {
        let now = self.now();
        let steps = self
            .with_site(&agent.site, |d| d.board.decline(id, agent.user, now))
            .map_err(route)?;
        self.change(
            &agent.site,
            id,
            ConversationChange {
                status: Some(Status::Queued),
                assignee: Some(None),
                ..ConversationChange::default()
            },
        )
        .await?;
        for s in steps {
            self.carry_out(&agent.site, s).await;
        }
        self.inner.watch.publish_board(&agent.site);
        Ok(())
    }

    /// A person writes to the visitor. Writing in a conversation nobody holds takes it (the AI
    /// then keeps quiet); one held by someone else is refused.
    pub async fn agent_say(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
        client_id: String,
        text: &str,
    ) -> Result<Message, DeskError> {
        let text = check_text(text)?;
        let c = self.held_by(agent, id).await?;
        self.agent_message(agent, &c, client_id, text, None).await
    }

    /// A person sends a file (checked by its content; see [`crate::files`]).
    pub async fn agent_file(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
        client_id: String,
        name: &str,
        bytes: &[u8],
    ) -> Result<Message, DeskError> {
        let checked = crate::files::check(name, bytes)?;
        let c = self.held_by(agent, id).await?;
        let attachment = self
            .store_file(&c, &client_id, &checked, bytes, Author::Agent)
            .await?;
        self.agent_message(agent, &c, client_id, checked.name, Some(attachment))
            .await
    }

    /// The conversation, held by this person: taken when nobody holds it, refused when closed
    /// or held by someone else.
    async fn held_by(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
    ) -> Result<Conversation, DeskError> {
        let c = self.conversation(&agent.site, id).await?;
        if c.status.is_closed() {
            return Err(DeskError::Conflict(
                "this conversation is closed".to_owned(),
            ));
        }
        if c.assignee.is_some_and(|u| u != agent.user) && c.status == Status::Active {
            return Err(DeskError::Conflict(
                "someone else holds this conversation".to_owned(),
            ));
        }
        if c.status == Status::Active && c.assignee == Some(agent.user) {
            return Ok(c);
        }
        let now = self.now();
        let steps = self.with_site(&agent.site, |d| {
            d.names.insert(agent.user, agent.name.clone());
            d.board.hold(id, agent.user, now)
        });
        let c = self.take(agent, &c).await?;
        for s in steps {
            self.carry_out(&agent.site, s).await;
        }
        self.inner.watch.publish_board(&agent.site);
        Ok(c)
    }

    async fn agent_message(
        &self,
        agent: &AgentRef,
        c: &Conversation,
        client_id: String,
        text: String,
        attachment: Option<Attachment>,
    ) -> Result<Message, DeskError> {
        let (message, _) = self
            .append(
                c,
                NewMessage {
                    client_id: Some(client_id),
                    author: Author::Agent,
                    author_id: Some(agent.user),
                    author_name: Some(agent.name.clone()),
                    text,
                    attachment,
                    at: self.now(),
                },
            )
            .await?;
        Ok(message)
    }

    /// A file of one of the site's conversations, for its people.
    pub async fn site_file(
        &self,
        site: &beckon_engine::SiteId,
        conversation: &ConversationId,
        file: &str,
    ) -> Result<(FileRecord, Vec<u8>), DeskError> {
        match self.store().file(site, file).await? {
            Some((record, bytes)) if &record.conversation == conversation => Ok((record, bytes)),
            _ => Err(DeskError::NotFound),
        }
    }

    /// A person ends the conversation.
    pub async fn agent_close(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
    ) -> Result<Conversation, DeskError> {
        agent.may_change(&self.conversation(&agent.site, id).await?)?;
        self.close(&agent.site, id, Closer::Agent).await
    }

    /// A person hands the conversation to a department's queue or to another person.
    pub async fn transfer(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
        to: &Target,
    ) -> Result<Conversation, DeskError> {
        let c = self.conversation(&agent.site, id).await?;
        if c.status.is_closed() {
            return Err(DeskError::Conflict(
                "this conversation is closed".to_owned(),
            ));
        }
        agent.may_change(&c)?;
        let settings = self.settings(&agent.site);
        let now = self.now();
        match to {
            Target::Department(dept) => {
                let Some(d) = settings.departments.iter().find(|d| &d.id == dept) else {
                    return Err(DeskError::Invalid(format!("no department {dept:?}")));
                };
                let name = d.name.clone();
                let release = self.with_site(&agent.site, |d| d.board.release(id, now));
                let queued = self
                    .change(
                        &agent.site,
                        id,
                        ConversationChange {
                            status: Some(Status::Queued),
                            assignee: Some(None),
                            department: Some(Some(dept.clone())),
                            ..ConversationChange::default()
                        },
                    )
                    .await?;
                self.notice(
                    &queued,
                    format!("{} passed the chat to our {name} team.", agent.name),
                )
                .await?;
                let request = self.with_site(&agent.site, |d| {
                    d.board.request(
                        id.clone(),
                        Some(dept.clone()),
                        queued.context.language.clone(),
                        queued.priority,
                        now,
                    )
                });
                for s in release.into_iter().chain(request) {
                    self.carry_out(&agent.site, s).await;
                }
            }
            Target::Person(user) => {
                let name = self.with_site(&agent.site, |d| d.names.get(user).cloned());
                let Some(name) = name else {
                    return Err(DeskError::Invalid(
                        "that person is not at the desk of this site".to_owned(),
                    ));
                };
                let release = self.with_site(&agent.site, |d| {
                    let mut steps = d.board.release(id, now);
                    steps.extend(d.board.hold(id, *user, now));
                    steps
                });
                let moved = self
                    .change(
                        &agent.site,
                        id,
                        ConversationChange {
                            status: Some(Status::Active),
                            assignee: Some(Some(*user)),
                            ..ConversationChange::default()
                        },
                    )
                    .await?;
                self.notice(&moved, format!("{} passed the chat to {name}.", agent.name))
                    .await?;
                for s in release {
                    self.carry_out(&agent.site, s).await;
                }
            }
        }
        self.inner.watch.publish_board(&agent.site);
        self.conversation(&agent.site, id).await
    }

    /// A person starts a conversation with a visitor on the site now.
    pub async fn start_with(
        &self,
        agent: &AgentRef,
        visitor: &beckon_engine::VisitorId,
        text: &str,
    ) -> Result<Conversation, DeskError> {
        let text = check_text(text)?;
        let who = super::VisitorRef {
            site: agent.site.clone(),
            visitor: visitor.clone(),
        };
        if !self.inner.context.known(&agent.site, visitor).await {
            return Err(DeskError::Invalid(
                "no such visitor on this site".to_owned(),
            ));
        }
        if let Some(open) = self.open_of(&who).await? {
            return Err(DeskError::Conflict(format!(
                "this visitor already has an open conversation ({})",
                open.id
            )));
        }
        let now = self.now();
        let context = self.inner.context.context(&agent.site, visitor).await;
        let c = Conversation {
            id: new_id(),
            site: agent.site.clone(),
            visitor: visitor.clone(),
            status: Status::Active,
            department: None,
            assignee: Some(agent.user),
            origin: Origin::Agent { user: agent.user },
            priority: context.cart.as_ref().map_or(0, |c| c.value.round() as i64),
            context,
            prechat: None,
            handoff: None,
            started_at: now,
            updated_at: now,
            closed: None,
            rating: None,
            last_seq: 0,
            visitor_read: 0,
            agent_read: 0,
        };
        self.store().open_conversation(&c, &[started(&c)]).await?;
        let steps = self.with_site(&agent.site, |d| {
            d.open.insert(c.id.clone(), Live::of(&c));
            d.names.insert(agent.user, agent.name.clone());
            d.board.hold(&c.id, agent.user, now)
        });
        for s in steps {
            self.carry_out(&agent.site, s).await;
        }
        self.inner.watch.publish(
            &agent.site,
            visitor,
            Update::Changed {
                conversation: Box::new(c.clone()),
            },
        );
        self.append(
            &c,
            NewMessage {
                client_id: None,
                author: Author::Agent,
                author_id: Some(agent.user),
                author_name: Some(agent.name.clone()),
                text,
                attachment: None,
                at: now,
            },
        )
        .await?;
        self.inner.watch.invite(&agent.site, visitor);
        self.inner.watch.began_or_ended(&c, true);
        self.inner.watch.publish_board(&agent.site);
        Ok(c)
    }

    /// A person types (or stopped).
    pub async fn agent_typing(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
        on: bool,
    ) -> Result<(), DeskError> {
        let c = self.conversation(&agent.site, id).await?;
        self.inner.watch.publish(
            &agent.site,
            &c.visitor,
            Update::Typing {
                conversation: c.id.clone(),
                visitor: c.visitor.clone(),
                author: Author::Agent,
                on,
            },
        );
        Ok(())
    }

    /// A person has read up to a message.
    pub async fn agent_read(
        &self,
        agent: &AgentRef,
        id: &ConversationId,
        seq: u64,
    ) -> Result<(), DeskError> {
        let c = self.conversation(&agent.site, id).await?;
        let read = self
            .store()
            .change_conversation(
                &agent.site,
                id,
                &ConversationChange {
                    agent_read: Some(seq),
                    ..ConversationChange::default()
                },
                c.updated_at,
            )
            .await?;
        self.inner.watch.publish(
            &agent.site,
            &c.visitor,
            Update::Read {
                conversation: c.id.clone(),
                visitor: c.visitor.clone(),
                author: Author::Agent,
                seq: read.agent_read,
            },
        );
        Ok(())
    }

    /// One conversation of the site with its latest messages, for the console.
    pub async fn transcript(
        &self,
        site: &beckon_engine::SiteId,
        id: &ConversationId,
    ) -> Result<(Conversation, Vec<Message>), DeskError> {
        let c = self.conversation(site, id).await?;
        let messages = self
            .store()
            .messages(site, id, c.last_seq.saturating_sub(HISTORY as u64), HISTORY)
            .await?;
        Ok((c, messages))
    }
}
