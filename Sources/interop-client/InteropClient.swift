@main struct InteropClient { static func main() {} }
