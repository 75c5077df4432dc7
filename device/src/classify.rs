//! Streaming test images to the firmware (a board or QEMU) and reporting
//! accuracy, agreement with the host's int8 reference, latency and cost.

use crate::error::Result;
use crate::serial::Client;
use files::mnist::Split;
use shared::nets::Prediction;
use shared::protocol::{Classification, CostUnit};
use shared::NetId;
use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The firmware's answer for one image and how long the exchange took.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// What the firmware returned.
    pub prediction: Classification,
    /// From sending the request to receiving the response.
    pub round_trip: Duration,
}

/// Classify the first `n` images of `test` with `net` on the firmware, one
/// request at a time; `progress` is called after each.
pub fn stream<L: Read + Write>(
    client: &mut Client<L>,
    net: NetId,
    test: &Split,
    n: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Outcome>> {
    (0..n.min(test.len()))
        .map(|i| {
            let started = Instant::now();
            let prediction = client.classify(net, test.image(i))?;
            progress(i + 1);
            Ok(Outcome {
                prediction,
                round_trip: started.elapsed(),
            })
        })
        .collect()
}

/// A summary of a [`stream`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The network.
    pub net: NetId,
    /// Images classified.
    pub images: usize,
    /// Predictions equal to the label.
    pub correct: usize,
    /// Predictions whose class and logits equal the host's reference, and
    /// the first image where they do not (when a reference was given).
    pub agreement: Option<(usize, Option<usize>)>,
    /// Mean, median and largest round trip.
    pub round_trip: [Duration; 3],
    /// Mean firmware cost per inference, and its unit.
    pub cost: (u64, CostUnit),
}

impl Report {
    /// Summarise `outcomes` against the labels of `test` and, if given, the
    /// host's predictions for the same images.
    pub fn new(
        net: NetId,
        outcomes: &[Outcome],
        test: &Split,
        reference: Option<&[Prediction]>,
        unit: CostUnit,
    ) -> Report {
        let n = outcomes.len().max(1);
        let correct = outcomes
            .iter()
            .zip(&test.labels)
            .filter(|(o, &l)| o.prediction.class == l)
            .count();
        let agreement = reference.map(|r| {
            let same = |(o, p): (&Outcome, &Prediction)| {
                o.prediction.class == p.class && o.prediction.logits == p.logits
            };
            let agree = outcomes.iter().zip(r).filter(|&pair| same(pair)).count();
            (agree, outcomes.iter().zip(r).position(|pair| !same(pair)))
        });
        let mut times: Vec<Duration> = outcomes.iter().map(|o| o.round_trip).collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / n as u32;
        let cost = outcomes
            .iter()
            .map(|o| u64::from(o.prediction.cost))
            .sum::<u64>()
            / n as u64;
        Report {
            net,
            images: outcomes.len(),
            correct,
            agreement,
            round_trip: [
                mean,
                times.get(times.len() / 2).copied().unwrap_or_default(),
                times.last().copied().unwrap_or_default(),
            ],
            cost: (cost, unit),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "{}: {} images, accuracy {:.2}% ({} correct)",
            self.net.name(),
            self.images,
            100.0 * self.correct as f64 / self.images.max(1) as f64,
            self.correct
        )?;
        match self.agreement {
            Some((agree, None)) => writeln!(
                f,
                "  agreement with the host's int8 reference: {agree} of {} (class and logits)",
                self.images
            )?,
            Some((agree, Some(first))) => writeln!(
                f,
                "  agreement with the host's int8 reference: {agree} of {} (first difference: test image {first})",
                self.images
            )?,
            None => writeln!(f, "  no host reference (model file not found)")?,
        }
        writeln!(
            f,
            "  round trip: mean {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(self.round_trip[0]),
            ms(self.round_trip[1]),
            ms(self.round_trip[2])
        )?;
        write!(
            f,
            "  firmware cost: {} {} per inference",
            self.cost.0,
            self.cost.1.name()
        )
    }
}
