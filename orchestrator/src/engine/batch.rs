//! A writer task that gathers the requests arriving while it writes: under load one statement
//! serves many callers (and costs PostgreSQL one parse, plan and round trip), while a lone
//! request is written at once, without waiting for company.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

type Request<In, Out> = (In, oneshot::Sender<Out>);

/// The handle of one writer; clones share it. The writer ends when every handle is dropped.
pub struct Batcher<In, Out> {
    sender: mpsc::UnboundedSender<Request<In, Out>>,
}

impl<In, Out> Clone for Batcher<In, Out> {
    fn clone(&self) -> Self {
        Batcher {
            sender: self.sender.clone(),
        }
    }
}

impl<In: Send + 'static, Out: Send + 'static> Batcher<In, Out> {
    /// Starts the writer: `write` gets up to `max` requests and answers each, in order.
    pub fn start<W, F>(max: usize, mut write: W) -> Self
    where
        W: FnMut(Vec<In>) -> F + Send + 'static,
        F: Future<Output = Vec<Out>> + Send,
    {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Request<In, Out>>();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < max.max(1) {
                    match receiver.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                let (inputs, replies): (Vec<In>, Vec<_>) = batch.into_iter().unzip();
                let answers = write(inputs).await;
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
        });
        Batcher { sender }
    }

    /// The writer's answer to `input`; `None` when the writer has stopped.
    pub async fn submit(&self, input: In) -> Option<Out> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((input, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn requests_sent_while_the_writer_is_busy_share_the_next_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        let seen = Arc::clone(&sizes);
        let batcher = Batcher::start(10, move |inputs: Vec<u32>| {
            seen.lock().unwrap().push(inputs.len());
            let mut released = released.clone();
            async move {
                // The writer is busy until released.
                let _ = released.wait_for(|go| *go).await;
                inputs.into_iter().map(|n| n * 2).collect()
            }
        });
        let submit = |n: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit(n).await })
        };
        let first = submit(1);
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=4).map(submit).collect();
        // On the test's single thread, the spawned submits have all run once after this.
        tokio::task::yield_now().await;
        release.send(true).unwrap();

        assert_eq!(first.await.unwrap(), Some(2));
        let mut answers = Vec::new();
        for task in rest {
            answers.push(task.await.unwrap());
        }
        assert_eq!(answers, [Some(4), Some(6), Some(8)]);
        assert_eq!(
            *sizes.lock().unwrap(),
            [1, 3],
            "a lone request first, then the rest"
        );
    }
}
