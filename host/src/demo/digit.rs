//! A picture of a handwritten digit made into a network input the way
//! MNIST made its digits: grayscale, light ink on a dark field, the ink's
//! bounding box scaled (anti-aliased, aspect ratio kept) so that its
//! longer side is 20 pixels, and placed in a 28x28 field so that its centre
//! of mass sits at the field's centre.
//!
//! Pictures come from files (`host predict`: PNG, JPEG or PGM, of any size
//! up to [`MAX_PIXELS`]) or from the demo page's drawing pad, and go
//! through the same [`Picture::decode`] and [`mnist_input`].

use shared::arch::{IMAGE_PIXELS, IMAGE_SIDE};
use std::fmt;

/// Side of the box the ink is scaled into.
pub const INK_BOX: usize = 20;

/// The largest picture taken: 50 megapixels (more than a phone camera's
/// photo of a digit); anything larger is refused before it is decoded.
pub const MAX_PIXELS: u64 = 50_000_000;

/// Why a picture could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PictureError {
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// Not a PNG, JPEG or PGM file (or a damaged one).
    #[error("not a PNG, JPEG or PGM image ({0})")]
    NotAnImage(String),
    /// Over [`MAX_PIXELS`].
    #[error("{width}x{height} pixels is over the limit of {MAX_PIXELS} pixels (50 megapixels)")]
    TooLarge {
        /// Width found in the header.
        width: u32,
        /// Height found in the header.
        height: u32,
    },
}

/// A grayscale picture, row-major, 0 = black to 255 = white.
#[derive(Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` values.
    pub pixels: Vec<u8>,
}

impl fmt::Debug for Picture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Picture({}x{})", self.width, self.height)
    }
}

impl Picture {
    /// A PNG, JPEG or PGM file's bytes as grayscale (colour is turned into
    /// luma with BT.709's weights, as image-rs does; transparency is
    /// composited onto white: a drawing on a transparent canvas looks so). The header's size is checked against
    /// [`MAX_PIXELS`] before anything is decoded.
    pub fn decode(bytes: &[u8]) -> Result<Picture, PictureError> {
        if bytes.is_empty() {
            return Err(PictureError::Empty);
        }
        let not_image = |e: image::ImageError| PictureError::NotAnImage(e.to_string());
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| PictureError::NotAnImage(e.to_string()))?;
        if reader.format().is_none() {
            return Err(PictureError::NotAnImage("unknown format".into()));
        }
        let (width, height) = reader.into_dimensions().map_err(not_image)?;
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(PictureError::TooLarge { width, height });
        }
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| PictureError::NotAnImage(e.to_string()))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        reader.limits(limits);
        let gray = reader.decode().map_err(not_image)?.into_luma_alpha8();
        let pixels = gray
            .pixels()
            .map(|p| {
                let [luma, alpha] = p.0.map(u32::from);
                ((luma * alpha + 255 * (255 - alpha) + 127) / 255) as u8
            })
            .collect();
        Ok(Picture {
            width: width as usize,
            height: height as usize,
            pixels,
        })
    }

    fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }
}

/// The picture as an MNIST input: 784 bytes, row-major, 0 = background,
/// 255 = full ink.
///
/// 1. Polarity: the median of the border pixels is the background; if it
///    is light, the ink is dark and the picture is inverted. The background
///    level is then subtracted and the ink scaled to reach 1.0.
/// 2. The ink's bounding box: the pixels at least a tenth of the way to
///    the strongest ink (faint noise, JPEG ringing and paper texture stay
///    out). A picture without ink gives an empty (all-zero) input.
/// 3. The box is scaled so that its longer side is [`INK_BOX`] pixels, the
///    shorter side in proportion (at least 1), by area averaging: each
///    output pixel is the mean of the input over its footprint, partial
///    pixels weighted by their overlap (anti-aliased both ways).
/// 4. The scaled box goes into the 28x28 field shifted so that its centre
///    of mass (pixel centres at `i + 0.5`, weighted by ink) is nearest the
///    field's centre (14, 14): the shift is rounded to whole pixels, as
///    MNIST's are, and ink pushed past the field's edge is cut off.
pub fn mnist_input(picture: &Picture) -> [u8; IMAGE_PIXELS] {
    let ink = Ink::of(picture);
    let Some((x0, y0, x1, y1)) = ink.bounding_box(picture) else {
        return [0; IMAGE_PIXELS];
    };
    let (w, h) = (x1 - x0, y1 - y0);
    let longer = w.max(h) as f64;
    let out_w = ((w as f64 * INK_BOX as f64 / longer).round() as usize).clamp(1, INK_BOX);
    let out_h = ((h as f64 * INK_BOX as f64 / longer).round() as usize).clamp(1, INK_BOX);
    let crop: Vec<f32> = (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .map(|(x, y)| ink.at(picture, x, y))
        .collect();
    let scaled = resample(&crop, (w, h), (out_w, out_h));
    place(&scaled, out_w, out_h)
}

/// How a picture's grey levels map to ink: the background level, which way
/// the ink goes from it, and the strongest ink.
struct Ink {
    background: i32,
    dark_ink: bool,
    strongest: i32,
}

impl Ink {
    fn of(p: &Picture) -> Ink {
        let mut border: Vec<u8> = Vec::with_capacity(2 * (p.width + p.height));
        for x in 0..p.width {
            border.extend([p.at(x, 0), p.at(x, p.height - 1)]);
        }
        for y in 0..p.height {
            border.extend([p.at(0, y), p.at(p.width - 1, y)]);
        }
        border.sort_unstable();
        let background = i32::from(border[border.len() / 2]);
        let dark_ink = background > 127;
        let mut ink = Ink {
            background,
            dark_ink,
            strongest: 0,
        };
        ink.strongest = p.pixels.iter().map(|&v| ink.raw(v)).max().unwrap_or(0);
        ink
    }

    /// How far `v` is from the background, towards the ink.
    fn raw(&self, v: u8) -> i32 {
        let d = i32::from(v) - self.background;
        if self.dark_ink { -d } else { d }.max(0)
    }

    /// Ink at a pixel, 0.0 (background) to 1.0 (the strongest ink).
    fn at(&self, p: &Picture, x: usize, y: usize) -> f32 {
        if self.strongest == 0 {
            return 0.0;
        }
        self.raw(p.at(x, y)) as f32 / self.strongest as f32
    }

    /// `(x0, y0, x1, y1)`, end-exclusive, of the pixels with at least a
    /// tenth of the strongest ink; `None` if there is no ink.
    fn bounding_box(&self, p: &Picture) -> Option<(usize, usize, usize, usize)> {
        let threshold = (self.strongest + 9) / 10;
        if self.strongest == 0 {
            return None;
        }
        let (mut x0, mut y0, mut x1, mut y1) = (p.width, p.height, 0, 0);
        for y in 0..p.height {
            for x in 0..p.width {
                if self.raw(p.at(x, y)) >= threshold {
                    x0 = x0.min(x);
                    y0 = y0.min(y);
                    x1 = x1.max(x + 1);
                    y1 = y1.max(y + 1);
                }
            }
        }
        Some((x0, y0, x1, y1))
    }
}

/// Area-average resampling of a `w x h` image to `ow x oh`, one axis at a
/// time: output pixel `j` of an axis of `n` inputs and `m` outputs covers
/// the input interval `[j n / m, (j + 1) n / m)`, and is the mean of the
/// inputs over it, each weighted by its overlap.
fn resample(src: &[f32], (w, h): (usize, usize), (ow, oh): (usize, usize)) -> Vec<f32> {
    let wx = weights(w, ow);
    let wy = weights(h, oh);
    // Rows first: h x ow.
    let mut rows = vec![0f32; h * ow];
    for y in 0..h {
        for (j, taps) in wx.iter().enumerate() {
            rows[y * ow + j] = taps.iter().map(|&(i, wt)| wt * src[y * w + i]).sum();
        }
    }
    let mut out = vec![0f32; oh * ow];
    for (j, taps) in wy.iter().enumerate() {
        for x in 0..ow {
            out[j * ow + x] = taps.iter().map(|&(i, wt)| wt * rows[i * ow + x]).sum();
        }
    }
    out
}

/// For each of `m` outputs over `n` inputs: the inputs it overlaps and
/// their weights (summing to 1).
fn weights(n: usize, m: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n as f64 / m as f64;
    (0..m)
        .map(|j| {
            let (lo, hi) = (j as f64 * scale, (j + 1) as f64 * scale);
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).min(n);
            (first..last)
                .map(|i| {
                    let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    (i, (overlap / scale) as f32)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// The scaled ink (`w x h`, 0.0 to 1.0) in the 28x28 field, centre of mass
/// at the centre, as bytes.
fn place(ink: &[f32], w: usize, h: usize) -> [u8; IMAGE_PIXELS] {
    let (mut mass, mut mx, mut my) = (0f64, 0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let v = f64::from(ink[y * w + x]);
            mass += v;
            mx += v * (x as f64 + 0.5);
            my += v * (y as f64 + 0.5);
        }
    }
    let centre = IMAGE_SIDE as f64 / 2.0;
    let (dx, dy) = if mass > 0.0 {
        (
            (centre - mx / mass).round() as isize,
            (centre - my / mass).round() as isize,
        )
    } else {
        ((IMAGE_SIDE - w) as isize / 2, (IMAGE_SIDE - h) as isize / 2)
    };
    let mut out = [0u8; IMAGE_PIXELS];
    for y in 0..h {
        for x in 0..w {
            let (tx, ty) = (x as isize + dx, y as isize + dy);
            if (0..IMAGE_SIDE as isize).contains(&tx) && (0..IMAGE_SIDE as isize).contains(&ty) {
                let v = (ink[y * w + x] * 255.0).round().clamp(0.0, 255.0);
                out[ty as usize * IMAGE_SIDE + tx as usize] = v as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use files::mnist::{Dataset, Verify, DEFAULT_DATA_DIR};

    fn picture(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> Picture {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Picture {
            width,
            height,
            pixels,
        }
    }

    fn encode(p: &Picture, format: image::ImageFormat) -> Vec<u8> {
        let img =
            image::GrayImage::from_raw(p.width as u32, p.height as u32, p.pixels.clone()).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A black 10x20 block on white: already 20 pixels tall, so it is not
    /// scaled; its centre of mass (5, 10) goes to (14, 14): columns 9..19,
    /// rows 4..24, full ink, nothing else.
    #[test]
    fn a_block_lands_where_its_centre_of_mass_says() {
        let p = picture(100, 70, |x, y| {
            if (30..40).contains(&x) && (25..45).contains(&y) {
                0
            } else {
                255
            }
        });
        let input = mnist_input(&p);
        for y in 0..IMAGE_SIDE {
            for x in 0..IMAGE_SIDE {
                let want = if (9..19).contains(&x) && (4..24).contains(&y) {
                    255
                } else {
                    0
                };
                assert_eq!(input[y * IMAGE_SIDE + x], want, "({x}, {y})");
            }
        }
    }

    /// A 40x10 bar is halved to 20x5: still full ink (each output pixel
    /// averages four full ones), centred at (14, 14): columns 4..24, rows
    /// 12..17 (its centre of mass 2.5 rounds the shift 11.5 to 12).
    #[test]
    fn a_bar_is_scaled_to_twenty_pixels_keeping_its_aspect() {
        let p = picture(64, 32, |x, y| {
            if (10..50).contains(&x) && (11..21).contains(&y) {
                255
            } else {
                0
            }
        });
        let input = mnist_input(&p);
        let ink: Vec<(usize, usize)> = (0..IMAGE_PIXELS)
            .filter(|&i| input[i] > 0)
            .map(|i| (i % IMAGE_SIDE, i / IMAGE_SIDE))
            .collect();
        assert_eq!(ink.len(), 20 * 5);
        assert!(ink.iter().all(|&(x, y)| (4..24).contains(&x)
            && (12..17).contains(&y)
            && input[y * IMAGE_SIDE + x] == 255));
    }

    /// Area averaging against an independent computation: each output
    /// pixel as the mean of the input sampled on a fine grid (256 points
    /// per input pixel along each axis) over its footprint.
    #[test]
    fn resampling_is_the_mean_over_each_footprint() {
        let mut seed = 12345u64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1000) as f32 / 999.0
        };
        for ((w, h), (ow, oh)) in [
            ((37, 23), (20, 12)),
            ((7, 5), (20, 14)),
            ((50, 50), (20, 20)),
            ((3, 40), (2, 20)),
        ] {
            let src: Vec<f32> = (0..w * h).map(|_| rand()).collect();
            let got = resample(&src, (w, h), (ow, oh));
            const FINE: usize = 256;
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut sum, mut n) = (0f64, 0usize);
                    // Sample points at the centres of a fine grid over the
                    // output pixel's footprint in input coordinates.
                    for sy in 0..FINE {
                        let y =
                            (oy as f64 + (sy as f64 + 0.5) / FINE as f64) * h as f64 / oh as f64;
                        for sx in 0..FINE {
                            let x = (ox as f64 + (sx as f64 + 0.5) / FINE as f64) * w as f64
                                / ow as f64;
                            sum += f64::from(src[y as usize * w + x as usize]);
                            n += 1;
                        }
                    }
                    let want = sum / n as f64;
                    let g = f64::from(got[oy * ow + ox]);
                    assert!(
                        (g - want).abs() < 0.01,
                        "{w}x{h} -> {ow}x{oh} at ({ox}, {oy}): {g} vs {want}"
                    );
                }
            }
        }
    }

    /// MNIST's own digits are the independent computation of the whole
    /// recipe: each test digit drawn four times larger (each pixel a 4x4
    /// block), dark on light, somewhere on a larger page, comes back close
    /// to what MNIST made of it (MNIST scaled the original scans, so the
    /// faintest edge pixels and the rounding of the centring differ), and
    /// the networks read it the same.
    #[test]
    fn mnist_digits_come_back() {
        let test = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly)
            .unwrap()
            .test;
        let model = device::reference::Reference::load(
            device::reference::MODEL_DIR.as_ref(),
            shared::NetId::ResNetIdentity,
        )
        .unwrap();
        let n = 300;
        let (mut same_class, mut total_diff, mut worst_mean) = (0, 0f64, 0f64);
        for i in 0..n {
            let digit = test.image(i);
            let (ox, oy) = (13 + i % 7, 29 + i % 5);
            let page = picture(150, 170, |x, y| {
                let (dx, dy) = (x.wrapping_sub(ox) / 4, y.wrapping_sub(oy) / 4);
                if dx < IMAGE_SIDE && dy < IMAGE_SIDE {
                    255 - digit[dy * IMAGE_SIDE + dx]
                } else {
                    255
                }
            });
            let back = mnist_input(&page);
            // Mean absolute difference per pixel, at the best shift of at
            // most one pixel.
            let mean_diff = |sx: isize, sy: isize| {
                let sum: u32 = (0..IMAGE_PIXELS)
                    .map(|j| {
                        let (x, y) = (
                            (j % IMAGE_SIDE) as isize + sx,
                            (j / IMAGE_SIDE) as isize + sy,
                        );
                        let d = if (0..28).contains(&x) && (0..28).contains(&y) {
                            digit[(y * 28 + x) as usize]
                        } else {
                            0
                        };
                        u32::from(back[j].abs_diff(d))
                    })
                    .sum();
                f64::from(sum) / IMAGE_PIXELS as f64
            };
            let best = (-1..=1)
                .flat_map(|sy| (-1..=1).map(move |sx| (sx, sy)))
                .map(|(sx, sy)| mean_diff(sx, sy))
                .fold(f64::MAX, f64::min);
            total_diff += best;
            worst_mean = worst_mean.max(best);
            same_class += usize::from(model.predict(&back).class == model.predict(digit).class);
        }
        println!("mean |difference| {:.2} per pixel (worst digit {worst_mean:.2}); same class {same_class} of {n}", total_diff / n as f64);
        assert!(total_diff / (n as f64) < 0.5, "{}", total_diff / n as f64);
        assert!(same_class * 100 >= n * 98, "{same_class} of {n}");
    }

    #[test]
    fn light_ink_on_dark_and_dark_ink_on_light_give_one_input() {
        let test = Dataset::load(DEFAULT_DATA_DIR.as_ref(), Verify::ShapeOnly)
            .unwrap()
            .test;
        let digit = test.image(3);
        let light = picture(56, 56, |x, y| digit[(y / 2) * IMAGE_SIDE + x / 2]);
        let dark = picture(56, 56, |x, y| 255 - digit[(y / 2) * IMAGE_SIDE + x / 2]);
        assert_eq!(mnist_input(&light), mnist_input(&dark));
        assert!(mnist_input(&light).iter().any(|&v| v > 200));
    }

    #[test]
    fn a_blank_picture_is_an_empty_input() {
        assert_eq!(mnist_input(&picture(30, 40, |_, _| 255)), [0; IMAGE_PIXELS]);
        assert_eq!(mnist_input(&picture(1, 1, |_, _| 0)), [0; IMAGE_PIXELS]);
    }

    #[test]
    fn png_jpeg_and_pgm_decode_to_the_same_picture() {
        let p = picture(40, 30, |x, y| ((x * 5 + y * 3) % 256) as u8);
        for format in [image::ImageFormat::Png, image::ImageFormat::Pnm] {
            assert_eq!(
                Picture::decode(&encode(&p, format)).unwrap(),
                p,
                "{format:?}"
            );
        }
        // JPEG is lossy: close, not equal.
        let jpeg = Picture::decode(&encode(&p, image::ImageFormat::Jpeg)).unwrap();
        assert_eq!((jpeg.width, jpeg.height), (40, 30));
        let worst = jpeg
            .pixels
            .iter()
            .zip(&p.pixels)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst < 40, "{worst}");
    }

    /// A drawing pad's PNG: black strokes on a transparent canvas read as
    /// black on white.
    #[test]
    fn transparency_is_white() {
        let mut img = image::RgbaImage::new(4, 1);
        img.put_pixel(0, 0, image::Rgba([0, 0, 0, 255]));
        img.put_pixel(1, 0, image::Rgba([0, 0, 0, 0]));
        img.put_pixel(2, 0, image::Rgba([200, 0, 0, 255]));
        img.put_pixel(3, 0, image::Rgba([0, 0, 0, 128]));
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        let p = Picture::decode(&bytes.into_inner()).unwrap();
        assert_eq!(p.pixels[..2], [0, 255]);
        // BT.709 luma, as image-rs computes it: 0.2126 * 200.
        assert!(
            (41..=45).contains(&p.pixels[2]),
            "red is dark grey: {}",
            p.pixels[2]
        );
        assert!(
            (120..135).contains(&p.pixels[3]),
            "half transparent black is mid grey: {}",
            p.pixels[3]
        );
    }

    #[test]
    fn bad_pictures_are_refused_with_the_reason() {
        assert!(matches!(Picture::decode(&[]), Err(PictureError::Empty)));
        let e = Picture::decode(b"GIF89a, or rather not").unwrap_err();
        assert!(matches!(e, PictureError::NotAnImage(_)), "{e}");
        // A PNG cut in half.
        let png = encode(&picture(64, 64, |x, _| x as u8), image::ImageFormat::Png);
        let e = Picture::decode(&png[..png.len() / 2]).unwrap_err();
        assert!(matches!(e, PictureError::NotAnImage(_)), "{e}");
    }

    /// A PNG whose header says 10,000 x 10,000: refused by its header,
    /// before any pixel is decoded (the file has none).
    #[test]
    fn a_huge_picture_is_refused_before_decoding() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(10_000u32.to_be_bytes());
        ihdr.extend(10_000u32.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
        png.extend((ihdr.len() as u32 - 4).to_be_bytes());
        png.extend(&ihdr);
        png.extend(shared::model::crc32(&ihdr).to_be_bytes());
        for chunk in [&b"IDAT"[..], &b"IEND"[..]] {
            png.extend(0u32.to_be_bytes());
            png.extend(chunk);
            png.extend(shared::model::crc32(chunk).to_be_bytes());
        }
        let e = Picture::decode(&png).unwrap_err();
        assert!(
            matches!(
                e,
                PictureError::TooLarge {
                    width: 10_000,
                    height: 10_000
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("10000x10000"), "{e}");
    }
}
