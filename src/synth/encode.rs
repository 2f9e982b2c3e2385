//! H.264 in MP4 through FFmpeg's libraries (libx264 via ffmpeg-next), set up so the same frames give
//! the same bytes: one encoder thread, FFmpeg's bit-exact flags (no version strings or clock times in
//! the container), yuv420p.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::ffi;

use super::SynthError;

/// Writes RGB24 frames of one size and rate to an MP4 file.
pub struct Mp4Writer {
    path: PathBuf,
    output: ff::format::context::Output,
    encoder: ff::encoder::Video,
    scaler: ff::software::scaling::Context,
    rgb: ff::frame::Video,
    yuv: ff::frame::Video,
    encoder_time_base: ff::Rational,
    stream_time_base: ff::Rational,
    next_pts: i64,
    width: u32,
    height: u32,
}

impl Mp4Writer {
    /// Opens `path` for writing (the container is MP4 whatever the file is called). `width` and
    /// `height` must be even; `fps` becomes the stream's exact rational rate.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64, crf: u32) -> Result<Mp4Writer, SynthError> {
        crate::source::ffmpeg::init();
        let fail = |what: &str, err: ff::Error| SynthError::Encode { path: path.to_path_buf(), reason: format!("{what}: {err}") };
        if width % 2 != 0 || height % 2 != 0 || width == 0 || height == 0 {
            return Err(SynthError::Settings(format!("frame size {width}x{height}: H.264 in yuv420p needs even, non-zero width and height")));
        }
        let rate = crate::source::sampler::Ratio::from_f64(fps);
        let time_base = ff::Rational::new(rate.den as i32, rate.num as i32);
        let mut output = ff::format::output_as(path, "mp4").map_err(|e| fail("opening the output", e))?;
        unsafe {
            // No muxer version string or creation time: same frames, same bytes.
            (*output.as_mut_ptr()).flags |= ffi::AVFMT_FLAG_BITEXACT as i32;
        }
        let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| SynthError::Encode {
            path: path.to_path_buf(),
            reason: "this FFmpeg has no libx264 encoder (install an FFmpeg built with --enable-libx264)".into(),
        })?;
        let global_header = output.format().flags().contains(ff::format::Flags::GLOBAL_HEADER);
        let mut stream = output.add_stream(codec).map_err(|e| fail("adding the video stream", e))?;
        let mut encoder = ff::codec::context::Context::new_with_codec(codec).encoder().video().map_err(|e| fail("creating the encoder", e))?;
        encoder.set_width(width);
        encoder.set_height(height);
        encoder.set_format(ff::format::Pixel::YUV420P);
        encoder.set_time_base(time_base);
        encoder.set_frame_rate(Some(ff::Rational::new(rate.num as i32, rate.den as i32)));
        encoder.set_gop(rate.as_f64().round().max(1.0) as u32 * 2);
        let mut flags = ff::codec::Flags::BITEXACT;
        if global_header {
            flags |= ff::codec::Flags::GLOBAL_HEADER;
        }
        encoder.set_flags(flags);
        let mut options = ff::Dictionary::new();
        options.set("preset", "veryfast");
        options.set("crf", &crf.to_string());
        options.set("threads", "1");
        let encoder = encoder.open_with(options).map_err(|e| fail("opening libx264", e))?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        output.write_header().map_err(|e| fail("writing the header", e))?;
        let stream_time_base = output.stream(0).expect("added above").time_base();
        let scaler = ff::software::scaling::Context::get(
            ff::format::Pixel::RGB24,
            width,
            height,
            ff::format::Pixel::YUV420P,
            width,
            height,
            ff::software::scaling::Flags::BILINEAR | ff::software::scaling::Flags::ACCURATE_RND | ff::software::scaling::Flags::BITEXACT,
        )
        .map_err(|e| fail("setting up colour conversion", e))?;
        Ok(Mp4Writer {
            path: path.to_path_buf(),
            output,
            encoder,
            scaler,
            rgb: ff::frame::Video::new(ff::format::Pixel::RGB24, width, height),
            yuv: ff::frame::Video::empty(),
            encoder_time_base: time_base,
            stream_time_base,
            next_pts: 0,
            width,
            height,
        })
    }

    fn fail(&self, what: &str, err: ff::Error) -> SynthError {
        SynthError::Encode { path: self.path.clone(), reason: format!("{what}: {err}") }
    }

    /// Appends one packed RGB24 frame.
    pub fn push(&mut self, rgb: &[u8]) -> Result<(), SynthError> {
        let row = self.width as usize * 3;
        assert_eq!(rgb.len(), row * self.height as usize, "frame size differs from the writer's");
        let stride = self.rgb.stride(0);
        let data = self.rgb.data_mut(0);
        for (y, line) in rgb.chunks_exact(row).enumerate() {
            data[y * stride..y * stride + row].copy_from_slice(line);
        }
        self.scaler.run(&self.rgb, &mut self.yuv).map_err(|e| self.fail("converting to yuv420p", e))?;
        self.yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder.send_frame(&self.yuv).map_err(|e| self.fail("encoding", e))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<(), SynthError> {
        let mut packet = ff::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            // Without a duration the muxer gives the last frame none, and demuxers drop it.
            packet.set_duration(1);
            packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
            packet.write_interleaved(&mut self.output).map_err(|e| self.fail("writing a packet", e))?;
        }
        Ok(())
    }

    /// Flushes the encoder and writes the container's index.
    pub fn finish(mut self) -> Result<(), SynthError> {
        self.encoder.send_eof().map_err(|e| self.fail("flushing the encoder", e))?;
        self.drain()?;
        self.output.write_trailer().map_err(|e| self.fail("writing the trailer", e))?;
        Ok(())
    }
}
