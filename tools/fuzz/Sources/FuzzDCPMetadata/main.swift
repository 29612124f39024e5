import FuzzSupport
import MoECheckpoint

// A DCP folder whose `.metadata` is the input: unpickling, the metadata walk, chunk coverage and the
// storage table are all checked before any `.distcp` file is opened (none exists, so that is the last step).
runFuzzer { bytes in
    let metadata = ScratchFolder.write(bytes, as: ".metadata")
    let checkpoint = try DCPCheckpoint(directory: metadata.deletingLastPathComponent())
    _ = checkpoint.entries.map(\.name)
}
