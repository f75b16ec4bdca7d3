fn main() {
    println!("metagrad");
}
