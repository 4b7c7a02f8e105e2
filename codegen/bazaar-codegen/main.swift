import BazaarCodeGen
import Foundation

exit(CodeGenCLI.run(Array(CommandLine.arguments.dropFirst())))
