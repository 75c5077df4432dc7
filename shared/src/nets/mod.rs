//! The int8 forward pass of each network (no heap, no float), its typed
//! model and its static buffer plan; [`Model`] and [`classify`] for any
//! network; and (feature `std`) the f32 forward pass of any graph.
//!
//! Each network's int8 pass is written by hand, by design: its tensors and
//! layers are types (shapes as const generics), its buffers have offsets
//! fixed at compile time, and it picks its fused kernels. Its graph
//! ([`crate::graph`]) holds it to the network: the plan's steps are the
//! graph's steps (a const check, [`Plan::check`], which also checks every
//! buffer's size against the tensor it holds), each typed layer is read
//! from the model file by the graph's layer table (a layer of other
//! dimensions fails to decode), and a test runs every network against an
//! interpreter of its graph.
//!
//! # Memory
//!
//! Every activation tensor lives in one caller-provided [`Arena`] at an
//! offset fixed at compile time. Each network's [`Plan`] lists its steps in
//! execution order with the buffers each reads and writes; a `const`
//! evaluation ([`Plan::verify`]) proves that no buffer is overwritten while
//! it is still to be read, and the arena size is the plan's highest byte
//! ([`arena_bytes`]). Each kernel call
//! borrows its input and output regions (and its im2col scratch, a buffer
//! of the plan like the tensors) with [`Arena::pair`] or [`Arena::parts`],
//! which check at compile time that they are disjoint and inside the arena.
//! So the RAM a forward pass needs is known before the firmware runs: the
//! arena, plus the kernels' few KB of stack (a tile's accumulators and
//! each layer's per-channel requantisation).
//!
//! ```
//! use shared::nets::{arena_bytes, Arena, ARENA_BYTES};
//! use shared::NetId;
//! assert!(arena_bytes(NetId::Inception) <= 24 * 1024);
//! assert!(NetId::ALL.iter().all(|&net| arena_bytes(net) <= ARENA_BYTES));
//! // One arena serves every network (firmware: keep it in a static).
//! let arena = Box::new(Arena::<ARENA_BYTES>::new());
//! # drop(arena);
//! ```
//!
//! # Profiling
//!
//! The forward passes call [`Probe::layer`] after every step with the step's
//! name (the names of the plan's steps, in order), so the firmware can read
//! a cycle or instruction counter per layer. `()` is the no-op probe.

#[cfg(any(feature = "std", test))]
pub mod float;
pub mod inception;
pub mod resnet;
pub mod resnet_identity;

#[cfg(test)]
mod tests;

use crate::arch::{CLASSES, IMAGE_PIXELS};
use crate::error::Error;
use crate::graph::{self, Graph, NetId};
use crate::kernels::argmax_s8;
use crate::model::{Decode, File, Layers};

/// A decoded model of any network.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // no heap to box into; all are small enough
pub enum Model<'a> {
    /// An InceptionNet.
    Inception(inception::InceptionModel<'a>),
    /// A seed ResNet.
    ResNet(resnet::ResNetModel<'a>),
    /// An identity ResNet.
    ResNetIdentity(resnet_identity::ResNetIdentityModel<'a>),
}

impl<'a> Model<'a> {
    /// Decodes and checks a model file of any network; the weights stay in
    /// `bytes`.
    pub fn decode(bytes: &'a [u8]) -> Result<Model<'a>, Error> {
        let mut r = Layers::of(File::parse(bytes, None)?);
        match r.net() {
            NetId::Inception => read_as(&mut r, Model::Inception),
            NetId::ResNet => read_as(&mut r, Model::ResNet),
            NetId::ResNetIdentity => read_as(&mut r, Model::ResNetIdentity),
        }
    }

    /// The network.
    pub fn net(&self) -> NetId {
        match self {
            Model::Inception(_) => NetId::Inception,
            Model::ResNet(_) => NetId::ResNet,
            Model::ResNetIdentity(_) => NetId::ResNetIdentity,
        }
    }
}

/// The typed model `M` of `r`, as a [`Model`]. Out of line, so that
/// decoding holds one network's temporaries on the stack, not all of them
/// (the firmware decodes at boot, where its stack is deepest).
#[inline(never)]
fn read_as<'a, M: Decode<'a>>(
    r: &mut Layers<'a>,
    wrap: fn(M) -> Model<'a>,
) -> Result<Model<'a>, Error> {
    r.read_all().map(wrap)
}

/// The buffer plan of `net`'s int8 forward pass.
pub const fn plan(net: NetId) -> &'static Plan {
    match net {
        NetId::Inception => &inception::PLAN,
        NetId::ResNet => &resnet::PLAN,
        NetId::ResNetIdentity => &resnet_identity::PLAN,
    }
}

/// Peak activation + scratch RAM of one inference of `net`: its arena.
pub const fn arena_bytes(net: NetId) -> usize {
    plan(net).arena_bytes()
}

/// Arena bytes that serve every network.
pub const ARENA_BYTES: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < NetId::COUNT {
        if arena_bytes(NetId::ALL[i]) > max {
            max = arena_bytes(NetId::ALL[i]);
        }
        i += 1;
    }
    max
};

/// Most steps any network's plan has.
pub const MAX_STEPS: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < NetId::COUNT {
        if plan(NetId::ALL[i]).steps.len() > max {
            max = plan(NetId::ALL[i]).steps.len();
        }
        i += 1;
    }
    max
};

/// Called between the layers of a forward pass.
pub trait Probe {
    /// Step `name` has just finished (names as in the network's plan).
    fn layer(&mut self, name: &'static str);
}

/// No profiling.
impl Probe for () {
    #[inline(always)]
    fn layer(&mut self, _name: &'static str) {}
}

/// The result of one inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prediction {
    /// The predicted digit: the argmax of the logits (first on ties).
    pub class: u8,
    /// The ten int8 logits, in the fc layer's output quantisation.
    pub logits: [i8; CLASSES],
}

impl Prediction {
    /// The prediction for these logits.
    pub fn from_logits(logits: [i8; CLASSES]) -> Prediction {
        Prediction {
            class: argmax_s8(&logits) as u8,
            logits,
        }
    }
}

/// Classify `pixels` (raw bytes, row-major) with whichever network `model`
/// holds. `arena` must have room for it ([`ARENA_BYTES`] fits every one).
pub fn classify<const N: usize>(
    model: &Model<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> Prediction {
    Prediction::from_logits(forward(model, pixels, arena, probe))
}

/// The ten int8 logits of `pixels` by whichever network `model` holds.
pub fn forward<const N: usize>(
    model: &Model<'_>,
    pixels: &[u8; IMAGE_PIXELS],
    arena: &mut Arena<N>,
    probe: &mut impl Probe,
) -> [i8; CLASSES] {
    match model {
        Model::Inception(m) => inception::forward(m, pixels, arena, probe),
        Model::ResNet(m) => resnet::forward(m, pixels, arena, probe),
        Model::ResNetIdentity(m) => resnet_identity::forward(m, pixels, arena, probe),
    }
}

/// Reports the steps of a plan to a [`Probe`] as a forward pass finishes
/// them, in the plan's order.
pub(crate) struct Progress<'p, P> {
    probe: &'p mut P,
    steps: core::slice::Iter<'static, Step>,
}

impl<'p, P: Probe> Progress<'p, P> {
    pub(crate) fn new(plan: &'static Plan, probe: &'p mut P) -> Self {
        Progress {
            probe,
            steps: plan.steps.iter(),
        }
    }

    /// The next step of the plan has just finished.
    #[inline(always)]
    pub(crate) fn done(&mut self) {
        if let Some(step) = self.steps.next() {
            self.probe.layer(step.name());
        }
    }
}

/// The bytes all activation tensors of a forward pass live in, 4-byte
/// aligned (for word-wide kernel loads). Contents between inferences are
/// meaningless; a forward pass never reads a byte it has not written.
#[derive(Clone)]
#[repr(C, align(4))]
pub struct Arena<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A named region of an arena holding one typed tensor: a zero-sized
/// marker type per buffer of a plan.
pub trait Buffer {
    /// The tensor type stored there (an int8 array).
    type T: bytemuck::Pod;
    /// Byte offset in the arena.
    const OFFSET: usize;
    /// Name in the plan.
    const NAME: &'static str;
    /// The region, for plans.
    const REGION: Region = Region {
        name: Self::NAME,
        offset: Self::OFFSET,
        len: size_of::<Self::T>(),
    };
}

/// End offset of a buffer (where the next one may start).
pub const fn end<B: Buffer>() -> usize {
    B::OFFSET + size_of::<B::T>()
}

impl<const N: usize> Arena<N> {
    /// A zeroed arena (`const`, so it can initialise a `static`).
    pub const fn new() -> Self {
        Arena { bytes: [0; N] }
    }

    /// The raw bytes (e.g. to fill with garbage in tests).
    pub fn bytes_mut(&mut self) -> &mut [u8; N] {
        &mut self.bytes
    }

    /// The tensor in buffer `A`.
    #[inline(always)]
    pub fn get<A: Buffer>(&mut self) -> &mut A::T {
        const {
            assert!(end::<A>() <= N, "buffer outside the arena");
            assert!(A::OFFSET % align_of::<A::T>() == 0, "misaligned buffer");
        };
        bytemuck::from_bytes_mut(&mut self.bytes[A::OFFSET..end::<A>()])
    }

    /// The tensors in buffers `A` and `B`, which must not overlap (checked
    /// at compile time, like their bounds).
    #[inline(always)]
    pub fn pair<A: Buffer, B: Buffer>(&mut self) -> (&mut A::T, &mut B::T) {
        const {
            assert!(
                end::<A>() <= N && end::<B>() <= N,
                "buffer outside the arena"
            );
            assert!(
                end::<A>() <= B::OFFSET || end::<B>() <= A::OFFSET,
                "the two buffers overlap"
            );
        };
        if A::OFFSET < B::OFFSET {
            let (lo, hi) = self.bytes.split_at_mut(B::OFFSET);
            (
                bytemuck::from_bytes_mut(&mut lo[A::OFFSET..end::<A>()]),
                bytemuck::from_bytes_mut(&mut hi[..size_of::<B::T>()]),
            )
        } else {
            let (lo, hi) = self.bytes.split_at_mut(A::OFFSET);
            (
                bytemuck::from_bytes_mut(&mut hi[..size_of::<A::T>()]),
                bytemuck::from_bytes_mut(&mut lo[B::OFFSET..end::<B>()]),
            )
        }
    }
}

/// Several buffers of an arena at once (a tuple of [`Buffer`] markers):
/// see [`Arena::parts`].
pub trait Parts {
    /// The tuple of mutable tensors.
    type Refs<'a>;
    /// The buffers' regions.
    const REGIONS: &'static [Region];
    /// The tensors, from the arena's first byte.
    ///
    /// # Safety
    /// `base` must point to an arena holding every region, and the regions
    /// must be pairwise disjoint and aligned for their types.
    unsafe fn take<'a>(base: *mut u8) -> Self::Refs<'a>;
}

macro_rules! parts {
    ($($B:ident),+) => {
        impl<$($B: Buffer),+> Parts for ($($B,)+) {
            type Refs<'a> = ($(&'a mut $B::T,)+);
            const REGIONS: &'static [Region] = &[$($B::REGION),+];
            #[inline(always)]
            unsafe fn take<'a>(base: *mut u8) -> Self::Refs<'a> {
                // SAFETY: the caller's contract (checked at compile time by
                // `Arena::parts`): in bounds, disjoint, aligned; `T` is Pod.
                unsafe { ($(&mut *(base.add($B::OFFSET) as *mut $B::T),)+) }
            }
        }
    };
}
parts!(A, B, C);
parts!(A, B, C, D);
parts!(A, B, C, D, E);

/// Whether `regions` fit in `n` bytes, are pairwise disjoint and each
/// aligned to `align` (the strictest tensor alignment: 4).
const fn parts_ok(regions: &[Region], n: usize) -> bool {
    let mut i = 0;
    while i < regions.len() {
        if regions[i].end() > n || regions[i].offset % 4 != 0 {
            return false;
        }
        let mut j = i + 1;
        while j < regions.len() {
            if regions[i].overlaps(&regions[j]) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

impl<const N: usize> Arena<N> {
    /// The tensors of three to five buffers at once, e.g.
    /// `arena.parts::<(X, Y, Scratch)>()`; they must be disjoint, inside
    /// the arena and 4-byte aligned (checked at compile time).
    #[inline(always)]
    pub fn parts<P: Parts>(&mut self) -> P::Refs<'_> {
        const {
            assert!(
                parts_ok(P::REGIONS, N),
                "buffers overlap, are misaligned or outside the arena"
            )
        };
        // SAFETY: checked just above; the borrow of `self` covers them all.
        unsafe { P::take(self.bytes.as_mut_ptr()) }
    }
}

/// A buffer of a plan: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Buffer name.
    pub name: &'static str,
    /// Byte offset in the arena.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
}

impl Region {
    /// One past the last byte.
    pub const fn end(&self) -> usize {
        self.offset + self.len
    }

    const fn overlaps(&self, other: &Region) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }

    const fn same(&self, other: &Region) -> bool {
        self.offset == other.offset
            && self.len == other.len
            && graph::bytes_eq(self.name.as_bytes(), other.name.as_bytes())
    }
}

/// One step of a forward pass: the graph's step (its name and the nodes it
/// computes), the buffers it reads and those it writes (a concat is
/// written by several steps, each its channel slice; a fused conv writes
/// several tensors; a kernel's scratch counts as written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The graph's step.
    pub graph: graph::Step,
    /// Buffers read.
    pub reads: &'static [Region],
    /// Buffers written (none: the result goes to the caller, e.g. logits).
    pub writes: &'static [Region],
}

impl Step {
    /// The step's name (`conv1+pool1`, `incep1.b5_2`): what [`Probe::layer`]
    /// receives.
    pub const fn name(&self) -> &str {
        self.graph.name.as_str()
    }
}

/// A static buffer plan: the steps of a forward pass in execution order.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The network.
    pub net: NetId,
    /// The steps.
    pub steps: &'static [Step],
}

/// Why a plan is wrong (see [`Plan::verify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanViolation {
    /// Step `step` reads `buffer`, which no earlier step wrote.
    ReadBeforeWrite {
        /// Step index.
        step: usize,
        /// The buffer.
        buffer: &'static str,
    },
    /// Step `writer` overwrites (part of) `buffer` between its first write
    /// and its read by step `reader`.
    Clobbered {
        /// The step whose write destroys the buffer.
        writer: usize,
        /// The step that still needs it.
        reader: usize,
        /// The buffer.
        buffer: &'static str,
    },
    /// The plan's step `step` is not the graph's (or the plan has another
    /// number of steps: `step` is the first missing or extra one).
    NotTheGraphs {
        /// Step index.
        step: usize,
    },
    /// Step `step` computes a tensor later steps read, but writes no buffer
    /// of its size.
    Unwritten {
        /// Step index.
        step: usize,
    },
    /// Step `step` reads `buffer`, whose size is not that of any tensor
    /// the step's nodes read.
    WrongRead {
        /// Step index.
        step: usize,
        /// The buffer.
        buffer: &'static str,
    },
}

impl Plan {
    /// Bytes the plan needs: the highest end of any buffer written.
    pub const fn arena_bytes(&self) -> usize {
        let mut max = 0;
        let mut i = 0;
        while i < self.steps.len() {
            let writes = self.steps[i].writes;
            let mut j = 0;
            while j < writes.len() {
                if writes[j].end() > max {
                    max = writes[j].end();
                }
                j += 1;
            }
            i += 1;
        }
        max
    }

    /// Checks liveness: every buffer a step reads was written by an earlier
    /// step, and from its first write until that read no step wrote another
    /// buffer overlapping it (the reading step's own output included: a
    /// kernel's output never aliases its input, except an in-place update of
    /// the same buffer). Each buffer must be produced in one phase (written
    /// by consecutive producers, as a concat is), which holds when every
    /// tensor has its own buffer name.
    pub const fn verify(&self) -> Result<(), PlanViolation> {
        let steps = self.steps;
        let mut s = 0;
        while s < steps.len() {
            let reads = steps[s].reads;
            let mut r = 0;
            while r < reads.len() {
                let buf = reads[r];
                let mut first = 0;
                while first < s && !writes_same(steps[first].writes, &buf) {
                    first += 1;
                }
                if first == s {
                    return Err(PlanViolation::ReadBeforeWrite {
                        step: s,
                        buffer: buf.name,
                    });
                }
                let mut t = first;
                while t <= s {
                    let writes = steps[t].writes;
                    let mut w = 0;
                    while w < writes.len() {
                        if !writes[w].same(&buf) && writes[w].overlaps(&buf) {
                            return Err(PlanViolation::Clobbered {
                                writer: t,
                                reader: s,
                                buffer: buf.name,
                            });
                        }
                        w += 1;
                    }
                    t += 1;
                }
                r += 1;
            }
            s += 1;
        }
        Ok(())
    }
}

impl Plan {
    /// Checks that the plan is `g`'s: its steps are the graph's steps, in
    /// order; every tensor a step computes that a later step reads (a
    /// concat's part: the concat) has a written buffer of its size; every
    /// buffer a step reads has the size of a tensor its nodes read from an
    /// earlier step.
    pub const fn check(&self, g: &Graph) -> Result<(), PlanViolation> {
        let steps = g.steps();
        if self.steps.len() != steps.len() {
            let step = if self.steps.len() < steps.len() {
                self.steps.len()
            } else {
                steps.len()
            };
            return Err(PlanViolation::NotTheGraphs { step });
        }
        let mut s = 0;
        while s < steps.len() {
            let step = &self.steps[s];
            if !graph_step_eq(&step.graph, &steps[s]) {
                return Err(PlanViolation::NotTheGraphs { step: s });
            }
            let nodes = step.graph.nodes();
            let mut i = 0;
            while i < nodes.len() {
                let tensor = match g.concat_of(nodes[i]) {
                    Some(c) => c,
                    None => nodes[i],
                };
                if read_after(g, tensor, s) && !has_len(step.writes, g.node(tensor).tensor_bytes())
                {
                    return Err(PlanViolation::Unwritten { step: s });
                }
                i += 1;
            }
            let mut r = 0;
            while r < step.reads.len() {
                if !reads_input_of_len(g, nodes, s, step.reads[r].len) {
                    return Err(PlanViolation::WrongRead {
                        step: s,
                        buffer: step.reads[r].name,
                    });
                }
                r += 1;
            }
            s += 1;
        }
        Ok(())
    }
}

const fn graph_step_eq(a: &graph::Step, b: &graph::Step) -> bool {
    let (x, y) = (a.nodes(), b.nodes());
    if x.len() != y.len() || !a.name.is(b.name.as_str()) {
        return false;
    }
    let mut i = 0;
    while i < x.len() {
        if x[i].0 != y[i].0 {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether a node computed after step `s` reads `tensor`.
const fn read_after(g: &Graph, tensor: graph::NodeId, s: usize) -> bool {
    let nodes = g.nodes();
    let mut i = 0;
    while i < nodes.len() {
        let reader = graph::NodeId(i as u8);
        let (inputs, n) = nodes[i].inputs();
        let mut k = 0;
        while k < n {
            if inputs[k].0 == tensor.0 && g.step_of(reader) > s {
                return true;
            }
            k += 1;
        }
        i += 1;
    }
    false
}

const fn has_len(regions: &[Region], len: usize) -> bool {
    let mut i = 0;
    while i < regions.len() {
        if regions[i].len == len {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether one of `nodes` (step `s`) reads, from an earlier step, a tensor
/// of `len` bytes.
const fn reads_input_of_len(g: &Graph, nodes: &[graph::NodeId], s: usize, len: usize) -> bool {
    let mut i = 0;
    while i < nodes.len() {
        let (inputs, n) = g.node(nodes[i]).inputs();
        let mut k = 0;
        while k < n {
            let input = inputs[k];
            let earlier = match g.node(input).op {
                graph::Op::Concat { .. } => true,
                _ => g.step_of(input) < s,
            };
            if earlier && g.node(input).tensor_bytes() == len {
                return true;
            }
            k += 1;
        }
        i += 1;
    }
    false
}

/// Whether one of `writes` is `buf`.
const fn writes_same(writes: &[Region], buf: &Region) -> bool {
    let mut i = 0;
    while i < writes.len() {
        if writes[i].same(buf) {
            return true;
        }
        i += 1;
    }
    false
}

/// Step `index` of graph `g`, reading and writing these buffers.
pub const fn step(
    g: &Graph,
    index: usize,
    reads: &'static [Region],
    writes: &'static [Region],
) -> Step {
    Step {
        graph: g.steps()[index],
        reads,
        writes,
    }
}

/// Declares the buffers of a plan: a marker type per buffer with its tensor
/// type and offset.
macro_rules! buffers {
    ($($(#[doc = $d:literal])* $name:ident: $t:ty = $off:expr;)*) => {$(
        $(#[doc = $d])*
        #[derive(Clone, Copy, Debug)]
        #[allow(non_camel_case_types)] // named like the regions they are
        pub struct $name;
        impl $crate::nets::Buffer for $name {
            type T = $t;
            const OFFSET: usize = $off;
            const NAME: &'static str = stringify!($name);
        }
    )*};
}
pub(crate) use buffers;

/// `x[y][x][0] = lut[pixel]`: the input tensor from raw pixels.
#[inline(always)]
fn quantize_input<const S: usize>(
    lut: &[i8; crate::model::INPUT_LUT_LEN],
    pixels: &[u8; crate::arch::IMAGE_PIXELS],
    x: &mut [[[i8; 1]; S]; S],
) {
    for (q, &p) in x
        .as_flattened_mut()
        .as_flattened_mut()
        .iter_mut()
        .zip(pixels)
    {
        *q = lut[p as usize];
    }
}
