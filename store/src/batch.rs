//! Taking a batch off a queue shared by a few writer tasks: how the group
//! commit and the key store's creations share one statement among
//! concurrent requests.

use tokio::sync::{Mutex, mpsc};

/// Waits for the first queued item, then takes whatever else is queued
/// already, until the items' `weight` reaches `max`; `None` once every
/// sender is gone. The queue is held while taking, so each batch is one
/// writer's.
pub(crate) async fn next_batch<T>(
    queue: &Mutex<mpsc::UnboundedReceiver<T>>,
    max: usize,
    weight: impl Fn(&T) -> usize,
) -> Option<Vec<T>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut size = weight(&first);
    let mut batch = vec![first];
    while size < max {
        match queue.try_recv() {
            Ok(next) => {
                size += weight(&next);
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}
