//! The `sipmeter` binary.

fn main() {
    println!("sipmeter");
}
