//! The visitor's side of the desk: start, say, ask for a person, leave an address, close, rate,
//! typing and read marks, and the conversation to show on a new page.

use beckon_engine::{SiteId, VisitorId};
use beckon_store::StoreError;
use beckon_store::conversations::{
    Author, Closer, Conversation, ConversationChange, Message, ModelCall, NewMessage, Origin,
    Prechat, Rating, Status,
};

/// How a hand-off notes the address left for a follow-up.
const LEFT_FOR_FOLLOW_UP: &str = "left for a follow-up:";

use super::{Desk, DeskError, HISTORY, Live, Update, check_text, new_id, started};
use crate::responder::{Draft, Question, Usage, offline_answer};
use crate::scope::{self, Intent};
use beckon_store::conversations::Expect;

/// The visitor a request speaks for (their token was checked by the caller).
#[derive(Clone, Debug, PartialEq)]
pub struct VisitorRef {
    /// The site.
    pub site: SiteId,
    /// The visitor.
    pub visitor: VisitorId,
}

/// How a conversation the visitor starts begins.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Opening {
    /// The intervention engaged, when one was (rule, intervention).
    pub intervention: Option<(String, String)>,
    /// The department the rule names.
    pub department: Option<String>,
    /// The pre-chat form.
    pub prechat: Option<Prechat>,
}

/// What saying something did.
#[derive(Clone, Debug, PartialEq)]
pub struct Said {
    /// The conversation it went to (opened for it, perhaps).
    pub conversation: Conversation,
    /// The stored message.
    pub message: Message,
    /// Whether it was a resend of a stored one.
    pub duplicate: bool,
}

impl Desk {
    /// The visitor's open conversation, or a new one.
    pub async fn open(
        &self,
        who: &VisitorRef,
        opening: &Opening,
    ) -> Result<Conversation, DeskError> {
        if let Some(c) = self.open_of(who).await? {
            return Ok(c);
        }
        let now = self.now();
        let settings = self.settings(&who.site);
        let mut context = self.inner.context.context(&who.site, &who.visitor).await;
        let priority = context
            .cart
            .as_ref()
            .map_or(0, |c| c.value.max(0.0).round() as i64);
        let topic_department = opening.prechat.as_ref().and_then(|p| {
            settings
                .departments
                .iter()
                .find(|d| d.id == p.topic || d.name == p.topic)
                .map(|d| d.id.clone())
        });
        context
            .pages
            .truncate(beckon_store::conversations::MAX_CONTEXT_PAGES);
        let c = Conversation {
            id: new_id(),
            site: who.site.clone(),
            visitor: who.visitor.clone(),
            status: Status::Bot,
            department: opening
                .department
                .clone()
                .or(topic_department)
                .or_else(|| settings.departments.first().map(|d| d.id.clone())),
            assignee: None,
            origin: match &opening.intervention {
                Some((rule, intervention)) => Origin::Intervention {
                    rule: rule.clone(),
                    intervention: intervention.clone(),
                },
                None => Origin::Launcher,
            },
            context,
            prechat: opening.prechat.clone(),
            priority,
            handoff: None,
            started_at: now,
            updated_at: now,
            closed: None,
            rating: None,
            last_seq: 0,
            visitor_read: 0,
            agent_read: 0,
        };
        match self.store().open_conversation(&c, &[started(&c)]).await {
            Ok(()) => {}
            // Another tab opened one at the same moment: that one is theirs.
            Err(StoreError::Conflict(_)) => {
                return self.open_of(who).await?.ok_or(DeskError::NotFound);
            }
            Err(e) => return Err(e.into()),
        }
        self.with_site(&who.site, |d| d.open.insert(c.id.clone(), Live::of(&c)));
        self.inner.watch.began_or_ended(&c, true);
        self.inner.watch.publish(
            &who.site,
            &who.visitor,
            Update::Changed {
                conversation: Box::new(c.clone()),
            },
        );
        if !settings.welcome.trim().is_empty() && opening.intervention.is_none() {
            self.notice_from_ai(&c, settings.welcome.clone()).await?;
        }
        Ok(c)
    }

    async fn notice_from_ai(&self, c: &Conversation, text: String) -> Result<Message, DeskError> {
        let m = NewMessage {
            client_id: None,
            author: Author::Ai,
            author_id: None,
            author_name: None,
            text,
            attachment: None,
            at: self.now(),
        };
        Ok(self.append(c, m).await?.0)
    }

    pub(crate) async fn open_of(
        &self,
        who: &VisitorRef,
    ) -> Result<Option<Conversation>, DeskError> {
        Ok(self
            .store()
            .latest_conversation_of(&who.site, &who.visitor)
            .await?
            .filter(|c| !c.status.is_closed()))
    }

    /// The visitor says something: stored (once, whatever the resends), then answered by the
    /// AI agent while no person holds the conversation, or routed to people when it asks for
    /// them.
    pub async fn say(
        &self,
        who: &VisitorRef,
        client_id: String,
        text: &str,
        opening: &Opening,
    ) -> Result<Said, DeskError> {
        let text = check_text(text)?;
        let message = |at| NewMessage {
            client_id: Some(client_id.clone()),
            author: Author::Visitor,
            author_id: None,
            author_name: None,
            text: text.clone(),
            attachment: None,
            at,
        };
        if let Some(said) = self.resent_after_the_end(who, &client_id).await? {
            return Ok(said);
        }
        let mut c = self.open(who, opening).await?;
        let (message, duplicate) = match self.append(&c, message(self.now())).await {
            // It closed in the meantime: the message starts the visitor's next conversation.
            Err(DeskError::Conflict(_)) => {
                c = self.open(who, opening).await?;
                self.append(&c, message(self.now())).await?
            }
            other => other?,
        };
        if !duplicate && c.status == Status::Bot {
            let desk = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                if let Err(e) = desk.respond(&c, &text).await {
                    tracing::warn!(conversation = %c.id, error = %e, "answering a visitor");
                }
            });
        }
        Ok(Said {
            conversation: c,
            message,
            duplicate,
        })
    }

    /// A message the visitor's latest conversation already holds, when that conversation has
    /// ended since (a tab resending what it never heard stored): answered as the duplicate it
    /// is, rather than starting a new conversation with it.
    async fn resent_after_the_end(
        &self,
        who: &VisitorRef,
        client_id: &str,
    ) -> Result<Option<Said>, DeskError> {
        let Some(latest) = self
            .store()
            .latest_conversation_of(&who.site, &who.visitor)
            .await?
            .filter(|c| c.status.is_closed())
        else {
            return Ok(None);
        };
        let probe = NewMessage {
            client_id: Some(client_id.to_owned()),
            author: Author::Visitor,
            author_id: None,
            author_name: None,
            text: String::new(),
            attachment: None,
            at: self.now(),
        };
        // A closed conversation takes no new message: the store answers a duplicate or
        // refuses, and writes nothing either way.
        match self
            .store()
            .append_message(&who.site, &latest.id, &probe)
            .await
        {
            Ok(a) if a.duplicate => Ok(Some(Said {
                conversation: latest,
                message: a.message,
                duplicate: true,
            })),
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The visitor sends a file (checked by its content; see [`crate::files`]); it opens the
    /// conversation when there is none. The AI does not read files: a person will.
    pub async fn visitor_file(
        &self,
        who: &VisitorRef,
        client_id: String,
        name: &str,
        bytes: &[u8],
    ) -> Result<Said, DeskError> {
        let checked = crate::files::check(name, bytes)?;
        if let Some(said) = self.resent_after_the_end(who, &client_id).await? {
            return Ok(said);
        }
        let mut tries = 0;
        let (c, message, duplicate) = loop {
            let c = self.open(who, &Opening::default()).await?;
            let attachment = self
                .store_file(&c, &client_id, &checked, bytes, Author::Visitor)
                .await?;
            let message = NewMessage {
                client_id: Some(client_id.clone()),
                author: Author::Visitor,
                author_id: None,
                author_name: None,
                text: checked.name.clone(),
                attachment: Some(attachment),
                at: self.now(),
            };
            match self.append(&c, message).await {
                // It closed in the meantime: the file starts the visitor's next conversation.
                Err(DeskError::Conflict(_)) if tries == 0 => tries += 1,
                other => {
                    let (m, dup) = other?;
                    break (c, m, dup);
                }
            }
        };
        Ok(Said {
            conversation: c,
            message,
            duplicate,
        })
    }

    /// A file of the visitor's own conversations.
    pub async fn visitor_file_of(
        &self,
        who: &VisitorRef,
        file: &str,
    ) -> Result<(beckon_store::conversations::FileRecord, Vec<u8>), DeskError> {
        let (record, bytes) = self
            .store()
            .file(&who.site, file)
            .await?
            .ok_or(DeskError::NotFound)?;
        let c = self.conversation(&who.site, &record.conversation).await?;
        if c.visitor != who.visitor {
            return Err(DeskError::NotFound);
        }
        Ok((record, bytes))
    }

    /// The AI agent's turn: out of scope goes to people; otherwise the responder answers.
    async fn respond(&self, c: &Conversation, text: &str) -> Result<(), DeskError> {
        let now = self.now();
        let presales_only = self.with_site(&c.site, |d| d.settings.presales_only);
        let intent = scope::classify(text);
        let to_people = match intent {
            Intent::Presales => false,
            Intent::Person => true,
            Intent::Support(_) => presales_only,
        };
        if to_people {
            let reason = intent.reason().unwrap_or("asked for a person");
            let support = matches!(intent, Intent::Support(_));
            return self.hand_off(c, reason, support).await.map(|_| ());
        }
        // Only an answer the model will write takes from its budget.
        let (knowledge, responder, within_budget) = self.with_site(&c.site, |d| {
            let within =
                !d.responder.is_model() || d.budget.is_none_or(|b| b.take(&mut d.spent, now));
            (d.knowledge.clone(), d.responder.clone(), within)
        });
        let history = self
            .store()
            .messages(
                &c.site,
                &c.id,
                c.last_seq.saturating_sub(HISTORY as u64),
                HISTORY,
            )
            .await?;
        let mut draft = Drafting {
            desk: self.clone(),
            conversation: c.clone(),
        };
        let question = Question {
            text,
            history: &history,
            context: &c.context,
            knowledge: &knowledge,
        };
        let reply = if !responder.is_model() {
            offline_answer(&knowledge, text)
        } else if !within_budget {
            let kept = Usage::default();
            self.record_call(c, "offline", kept, now, 0, "budget").await;
            offline_answer(&knowledge, text)
        } else {
            let started = std::time::Instant::now();
            let answered = responder.answer(&question, &mut draft).await;
            let took = started.elapsed().as_millis() as u64;
            match answered {
                Ok(reply) => {
                    let at = self.now();
                    self.with_site(&c.site, |d| d.spent.settle(at, &reply.usage));
                    self.record_call(c, &responder.name(), reply.usage, now, took, "ok")
                        .await;
                    reply
                }
                Err(e) => {
                    tracing::warn!(conversation = %c.id, error = %e, "the model failed; the offline responder answers");
                    let tried = Usage {
                        calls: 1,
                        ..Usage::default()
                    };
                    let outcome = format!("error: {e}");
                    let at = self.now();
                    self.with_site(&c.site, |d| d.spent.settle(at, &tried));
                    self.record_call(c, &responder.name(), tried, now, took, &outcome)
                        .await;
                    offline_answer(&knowledge, text)
                }
            }
        };
        // A person may have taken the conversation while the answer was written: then the AI
        // keeps quiet.
        let now = self.conversation(&c.site, &c.id).await?;
        if now.status != Status::Bot {
            return Ok(());
        }
        self.notice_from_ai(&now, reply.text).await?;
        Ok(())
    }

    /// Records what an answer cost (a failed record is logged: it never fails the answer).
    async fn record_call(
        &self,
        c: &Conversation,
        model: &str,
        usage: Usage,
        at: beckon_engine::Timestamp,
        latency_ms: u64,
        outcome: &str,
    ) {
        let call = ModelCall {
            conversation: Some(c.id.clone()),
            at,
            model: model.to_owned(),
            purpose: "answer".to_owned(),
            calls: usage.calls,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            latency_ms,
            outcome: outcome.chars().take(500).collect(),
        };
        if let Err(e) = self.store().record_model_call(&c.site, &call).await {
            tracing::warn!(conversation = %c.id, error = %e, "recording a model call");
        }
    }

    /// The visitor asks for a person (the chat's button, or in words).
    pub async fn ask_person(&self, who: &VisitorRef) -> Result<Conversation, DeskError> {
        let c = self.open(who, &Opening::default()).await?;
        match c.status {
            Status::Bot | Status::Missed => self.hand_off(&c, "asked for a person", false).await,
            _ => Ok(c),
        }
    }

    /// Routes a conversation to people of its department (Support for support problems).
    async fn hand_off(
        &self,
        c: &Conversation,
        reason: &str,
        support: bool,
    ) -> Result<Conversation, DeskError> {
        let settings = self.settings(&c.site);
        let department = if support {
            settings
                .departments
                .iter()
                .find(|d| d.id == "support")
                .map(|d| d.id.clone())
                .or_else(|| c.department.clone())
        } else {
            c.department.clone()
        };
        let queued = match self
            .change(
                &c.site,
                &c.id,
                ConversationChange {
                    status: Some(Status::Queued),
                    department: Some(department.clone()),
                    handoff: Some(Some(reason.to_owned())),
                    // Another tab's request, or a person, got there first: nothing to do.
                    expect: Some(Expect {
                        statuses: vec![Status::Bot, Status::Missed],
                        assignee: None,
                    }),
                    ..ConversationChange::default()
                },
            )
            .await
        {
            Ok(q) => q,
            Err(DeskError::Conflict(_)) => return self.conversation(&c.site, &c.id).await,
            Err(e) => return Err(e),
        };
        let now = self.now();
        let (steps, anyone) = self.with_site(&c.site, |d| {
            let anyone = d.board.people().values().any(|p| {
                p.available
                    && (p.departments.is_empty()
                        || department
                            .as_deref()
                            .is_none_or(|x| p.departments.iter().any(|y| y == x)))
            });
            let steps = d.board.request(
                c.id.clone(),
                department.clone(),
                c.context.language.clone(),
                c.priority,
                now,
            );
            (steps, anyone)
        });
        for s in steps {
            self.carry_out(&c.site, s).await;
        }
        if !anyone {
            // Nobody of the department is even online: no point in making the visitor wait.
            let steps = self.with_site(&c.site, |d| d.board.release(&c.id, now));
            for s in steps {
                self.carry_out(&c.site, s).await;
            }
            return self.missed(&c.site, &c.id).await;
        }
        let name = department
            .as_deref()
            .and_then(|d| settings.departments.iter().find(|x| x.id == d))
            .map_or("our team".to_owned(), |d| format!("our {} team", d.name));
        self.notice(
            &queued,
            format!(
                "I'm connecting you with someone from {name}. They will see this conversation, \
                 so you won't have to repeat anything."
            ),
        )
        .await?;
        self.inner.watch.publish_board(&c.site);
        self.conversation(&c.site, &c.id).await
    }

    /// The visitor leaves an address for a follow-up (nobody was free).
    pub async fn leave_email(
        &self,
        who: &VisitorRef,
        email: &str,
        name: &str,
    ) -> Result<Conversation, DeskError> {
        let email = beckon_outbox::check_email(email).map_err(|_| {
            DeskError::Invalid("that does not look like an e-mail address".to_owned())
        })?;
        let email = email.as_str();
        let c = self.open_of(who).await?.ok_or(DeskError::NotFound)?;
        // Only in answer to the offer (nobody could take the chat), and once: the consent is
        // to that offer's words, and a second address would be a second lead for one chat.
        if c.status != Status::Missed {
            return Err(DeskError::Conflict(
                "an address is asked for only when nobody is free to answer".to_owned(),
            ));
        }
        if c.handoff
            .as_deref()
            .is_some_and(|h| h.contains(LEFT_FOR_FOLLOW_UP))
        {
            return Err(DeskError::Conflict(
                "an address was left in this chat already".to_owned(),
            ));
        }
        let mut prechat = c.prechat.clone().unwrap_or_default();
        prechat.email = email.to_owned();
        if !name.trim().is_empty() {
            prechat.name = check_text(name)?.chars().take(100).collect();
        }
        // The address becomes a lead, written with the conversation's change: the team is told
        // through the site's destinations, with the transcript so far.
        let transcript = self.store().messages(&c.site, &c.id, 0, HISTORY).await?;
        let lead = super::chat_lead(&c, &prechat, &transcript, self.now());
        let c = self
            .change(
                &c.site,
                &c.id,
                ConversationChange {
                    prechat: Some(Some(prechat)),
                    handoff: Some(Some(format!(
                        "{}; {LEFT_FOR_FOLLOW_UP} {email}",
                        c.handoff.as_deref().unwrap_or("asked for a person")
                    ))),
                    lead: Some(lead),
                    ..ConversationChange::default()
                },
            )
            .await?;
        self.notice(
            &c,
            format!("Thanks! We will write to {email} with everything said here."),
        )
        .await?;
        Ok(c)
    }

    /// The visitor ends the chat.
    pub async fn visitor_close(&self, who: &VisitorRef) -> Result<Conversation, DeskError> {
        let c = self.open_of(who).await?.ok_or(DeskError::NotFound)?;
        self.close(&who.site, &c.id, Closer::Visitor).await
    }

    /// The visitor rates their latest conversation, once it is closed.
    pub async fn rate(
        &self,
        who: &VisitorRef,
        score: u8,
        comment: &str,
    ) -> Result<Conversation, DeskError> {
        if !(1..=5).contains(&score) {
            return Err(DeskError::Invalid("a rating is 1 to 5".to_owned()));
        }
        let comment = if comment.trim().is_empty() {
            String::new()
        } else {
            check_text(comment)?
        };
        let c = self
            .store()
            .latest_conversation_of(&who.site, &who.visitor)
            .await?
            .ok_or(DeskError::NotFound)?;
        let rating = Rating {
            score,
            comment,
            at: self.now(),
        };
        let rated = Conversation {
            rating: Some(rating.clone()),
            ..c
        };
        let transcript = self
            .store()
            .messages(&who.site, &rated.id, 0, HISTORY)
            .await?;
        let announce = beckon_outbox::payload::conversation(
            beckon_store::outbox::Topic::ConversationRated,
            &rated,
            &transcript,
            rating.at,
        );
        self.store()
            .rate_conversation(&who.site, &rated.id, &rating, &[announce])
            .await?;
        self.inner.watch.publish(
            &who.site,
            &who.visitor,
            Update::Changed {
                conversation: Box::new(rated.clone()),
            },
        );
        Ok(rated)
    }

    /// The visitor types (or stopped); without an open conversation there is no one to tell.
    pub async fn visitor_typing(&self, who: &VisitorRef, on: bool) -> Result<(), DeskError> {
        let Some(c) = self.open_of(who).await? else {
            return Ok(());
        };
        self.inner.watch.publish(
            &who.site,
            &who.visitor,
            Update::Typing {
                conversation: c.id,
                visitor: who.visitor.clone(),
                author: Author::Visitor,
                on,
            },
        );
        Ok(())
    }

    /// The visitor has read up to a message; a closed conversation's marks stay as they were.
    pub async fn visitor_read(&self, who: &VisitorRef, seq: u64) -> Result<(), DeskError> {
        let Some(c) = self.open_of(who).await? else {
            return Ok(());
        };
        let read = self
            .store()
            .change_conversation(
                &who.site,
                &c.id,
                &ConversationChange {
                    visitor_read: Some(seq),
                    ..ConversationChange::default()
                },
                c.updated_at,
            )
            .await?;
        self.inner.watch.publish(
            &who.site,
            &who.visitor,
            Update::Read {
                conversation: c.id,
                visitor: who.visitor.clone(),
                author: Author::Visitor,
                seq: read.visitor_read,
            },
        );
        Ok(())
    }

    /// What a new page shows: the visitor's open conversation (or their latest, while it waits
    /// for a rating) and its messages after `after`.
    pub async fn sync(
        &self,
        who: &VisitorRef,
        after: u64,
    ) -> Result<Option<(Conversation, Vec<Message>)>, DeskError> {
        let Some(c) = self
            .store()
            .latest_conversation_of(&who.site, &who.visitor)
            .await?
        else {
            return Ok(None);
        };
        if c.status.is_closed() && c.rating.is_some() {
            return Ok(None);
        }
        let from = after.max(c.last_seq.saturating_sub(HISTORY as u64));
        let messages = self
            .store()
            .messages(&who.site, &c.id, from, HISTORY)
            .await?;
        Ok(Some((c, messages)))
    }
}

/// Streams a model's answer to the conversation's watchers as it is written.
struct Drafting {
    desk: Desk,
    conversation: Conversation,
}

impl Draft for Drafting {
    fn progress(&mut self, text_so_far: &str) {
        self.desk.inner.watch.publish(
            &self.conversation.site,
            &self.conversation.visitor,
            Update::Draft {
                conversation: self.conversation.id.clone(),
                visitor: self.conversation.visitor.clone(),
                text: text_so_far.to_owned(),
            },
        );
    }
}
