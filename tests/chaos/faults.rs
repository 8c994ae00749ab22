//! The seeded fault schedule: one fault at a time, held for a random while, healed, then a
//! short calm, until the fault phase is over. The same seed gives the same sequence of choices
//! (which member is hit depends on who leads at that moment).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::Chaos;

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a follower, restart it.
    KillFollower,
    /// SIGKILL the leader, restart it.
    KillLeader,
    /// SIGSTOP a follower, SIGCONT later.
    PauseFollower,
    /// SIGSTOP the leader, SIGCONT later.
    PauseLeader,
    /// Cut the leader off from everyone (both directions).
    IsolateLeader,
    /// Majority/minority split with the leader in the majority (a minority of followers cut off).
    SplitMinority,
    /// The leader's messages to one follower are lost (one way).
    OneWayFromLeader,
    /// One follower's messages to the leader are lost (one way).
    OneWayToLeader,
    /// Maintenance.MoveLeader to a random follower.
    MoveLeader,
    /// Remove a follower, wipe it, add it back, start it with `existing`.
    RemoveReAdd,
    /// SIGKILL every member at once, restart them all (WAL replay everywhere).
    KillAll,
    /// Stop a follower until it needs the leader's snapshot, start it, make it leader while it
    /// installs, SIGKILL and restart it again.
    SnapshotCatchUp,
}

impl Fault {
    const ALL: [(Fault, u32); 12] = [
        (Fault::KillFollower, 3),
        (Fault::KillLeader, 3),
        (Fault::PauseFollower, 2),
        (Fault::PauseLeader, 2),
        (Fault::IsolateLeader, 3),
        (Fault::SplitMinority, 2),
        (Fault::OneWayFromLeader, 2),
        (Fault::OneWayToLeader, 2),
        (Fault::MoveLeader, 2),
        (Fault::RemoveReAdd, 1),
        (Fault::KillAll, 1),
        (Fault::SnapshotCatchUp, 1),
    ];

    /// A shuffled bag with every kind once (so a short run covers them all), then weighted
    /// picks.
    fn bag(rng: &mut StdRng) -> Vec<Fault> {
        let mut bag: Vec<Fault> = Fault::ALL.iter().map(|(f, _)| *f).collect();
        for i in (1..bag.len()).rev() {
            bag.swap(i, rng.random_range(0..=i));
        }
        bag
    }

    fn pick(rng: &mut StdRng) -> Fault {
        let total: u32 = Fault::ALL.iter().map(|(_, w)| w).sum();
        let mut x = rng.random_range(0..total);
        for (f, w) in Fault::ALL {
            if x < w {
                return f;
            }
            x -= w;
        }
        unreachable!()
    }
}

/// What the schedule did.
#[derive(Debug, Default)]
pub struct FaultLog {
    /// How many of each kind were injected.
    pub counts: BTreeMap<String, usize>,
    /// One line per fault: when, what, on whom, outcome.
    pub lines: Vec<String>,
    /// Things that went wrong with the cluster itself (a member that did not come back...).
    pub errors: Vec<String>,
}

/// A fixed schedule (for the planted-bug check) or a seeded random one.
pub enum Schedule {
    /// Random faults for this long.
    Random { seed: u64, duration: Duration },
    /// These faults in order, each held for the given time.
    Fixed(Vec<(Fault, Duration)>),
}

/// Runs the fault phase; every fault is healed when it returns.
pub async fn run(ch: &mut Chaos, schedule: Schedule, t0: Instant) -> FaultLog {
    let mut log = FaultLog::default();
    let (mut rng, steps, deadline) = match schedule {
        Schedule::Random { seed, duration } => (
            StdRng::seed_from_u64(seed),
            Vec::new(),
            Some(Instant::now() + duration),
        ),
        Schedule::Fixed(steps) => (StdRng::seed_from_u64(0), steps, None),
    };
    let mut fixed = steps.into_iter();
    let mut bag = Fault::bag(&mut rng);
    bag.reverse();
    let mut readded = false;
    let mut caught_up = false;
    loop {
        let (fault, hold) = match deadline {
            Some(d) => {
                if Instant::now() >= d {
                    break;
                }
                let mut f = bag.pop().unwrap_or_else(|| Fault::pick(&mut rng));
                // Membership changes and snapshot catch-ups are slow: at most one per run.
                if (f == Fault::RemoveReAdd && readded)
                    || (f == Fault::SnapshotCatchUp && caught_up)
                {
                    f = Fault::KillFollower;
                }
                (f, Duration::from_millis(rng.random_range(800..3000)))
            }
            None => match fixed.next() {
                Some(s) => s,
                None => break,
            },
        };
        let calm = Duration::from_millis(rng.random_range(300..1000));
        let at = t0.elapsed().as_secs_f64();
        let what = inject(ch, fault, hold, &mut rng, &mut log).await;
        readded |= fault == Fault::RemoveReAdd;
        caught_up |= fault == Fault::SnapshotCatchUp;
        *log.counts.entry(format!("{fault:?}")).or_default() += 1;
        let line = format!("{at:7.2}s {fault:?} {what}");
        eprintln!("chaos: {line}");
        log.lines.push(line);
        log.errors.extend(ch.ensure_all_running());
        tokio::time::sleep(calm).await;
    }
    ch.heal();
    log
}

/// Injects one fault, holds it, heals it; says on whom.
async fn inject(
    ch: &mut Chaos,
    fault: Fault,
    hold: Duration,
    rng: &mut StdRng,
    log: &mut FaultLog,
) -> String {
    let n = ch.n();
    let Some(leader) = ch.wait_leader(Duration::from_secs(20)).await else {
        log.errors.push(format!("no leader before {fault:?}"));
        return "skipped: no leader".into();
    };
    let followers: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
    let follower = followers[rng.random_range(0..followers.len())];
    let name = |i: usize| format!("m{}", i + 1);
    match fault {
        Fault::KillFollower | Fault::KillLeader => {
            let v = if fault == Fault::KillLeader {
                leader
            } else {
                follower
            };
            ch.kill(v);
            tokio::time::sleep(hold).await;
            if let Err(e) = ch.restart(v) {
                log.errors.push(e);
            }
            format!("{} for {hold:?}", name(v))
        }
        Fault::PauseFollower | Fault::PauseLeader => {
            let v = if fault == Fault::PauseLeader {
                leader
            } else {
                follower
            };
            ch.pause(v);
            tokio::time::sleep(hold).await;
            ch.resume(v);
            format!("{} for {hold:?}", name(v))
        }
        Fault::IsolateLeader => {
            ch.partition(&[leader], &followers, false);
            tokio::time::sleep(hold).await;
            ch.heal();
            format!("{} for {hold:?}", name(leader))
        }
        Fault::SplitMinority => {
            let k = ((n - 1) / 2).max(1);
            let mut minority = followers.clone();
            while minority.len() > k {
                minority.remove(rng.random_range(0..minority.len()));
            }
            let majority: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
            ch.partition(&minority, &majority, false);
            tokio::time::sleep(hold).await;
            ch.heal();
            format!(
                "{:?} | {:?} for {hold:?}",
                minority.iter().map(|&i| name(i)).collect::<Vec<_>>(),
                majority.iter().map(|&i| name(i)).collect::<Vec<_>>()
            )
        }
        Fault::OneWayFromLeader => {
            ch.partition(&[leader], &[follower], true);
            tokio::time::sleep(hold).await;
            ch.heal();
            format!("{} -/-> {} for {hold:?}", name(leader), name(follower))
        }
        Fault::OneWayToLeader => {
            ch.partition(&[follower], &[leader], true);
            tokio::time::sleep(hold).await;
            ch.heal();
            format!("{} -/-> {} for {hold:?}", name(follower), name(leader))
        }
        Fault::KillAll => {
            for i in 0..n {
                ch.kill(i);
            }
            tokio::time::sleep(hold).await;
            log.errors.extend(ch.restart_all());
            format!("all {n} for {hold:?}")
        }
        Fault::MoveLeader => match ch.move_leader(leader, follower).await {
            Ok(()) => format!("{} -> {}", name(leader), name(follower)),
            Err(e) => format!("{} -> {}: {e}", name(leader), name(follower)),
        },
        Fault::SnapshotCatchUp => match ch.snapshot_catch_up(follower, leader).await {
            Ok(what) => what,
            Err(e) => {
                log.errors.push(e.clone());
                format!("{}: {e}", name(follower))
            }
        },
        Fault::RemoveReAdd => match ch.remove_and_readd(follower).await {
            Ok(()) => format!("{} (now id {:x})", name(follower), ch.ids[follower]),
            Err(e) => {
                log.errors.push(e.clone());
                format!("{}: {e}", name(follower))
            }
        },
    }
}
